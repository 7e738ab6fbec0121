//! Compiles the ONNX subset schema with protox (pure Rust, no protoc) and prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/onnx_subset.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
