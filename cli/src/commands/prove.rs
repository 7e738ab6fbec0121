//! `zkaudit prove` (the local pipeline) and `zkaudit verify`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use zkaudit_circuits::aggregate::DEFAULT_AGG_K;
use zkaudit_circuits::certificate::{
    check_statement, verify_certificate, verify_succinct, Certificate, Mode,
};
use zkaudit_circuits::keys::{step_key, step_vk};
use zkaudit_circuits::pipeline::{
    auto_shape_span, auto_span, derive_root_key, prove_run, prove_run_succinct, RunProgress,
    SpanBudget,
};
use zkaudit_circuits::shape::{StepShape, MAX_SPAN};
use zkaudit_model::transcript::Transcript;

use super::prove_step::ProvingFiles;

/// Certificate mode.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// All step proofs, verified with one accumulated pairing (fast to prove).
    Batched,
    /// One recursive aggregation proof (small, slow to prove: needs an SRS with k >= --agg-k).
    Succinct,
}

/// Arguments of `zkaudit prove`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit srs --k 18
  zkaudit prove --run runs/digits --steps 4 --out runs/digits/run.cert
  zkaudit verify runs/digits/run.cert
  zkaudit srs --k 20 && zkaudit prove --run runs/digits --steps 4 --mode succinct --out runs/digits/succinct.cert")]
pub struct ProveArgs {
    /// Run directory written by `zkaudit train`.
    #[arg(long, env = "ZKAUDIT_RUN")]
    pub run: PathBuf,
    /// Prove only the first N steps (default: all).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Certificate mode.
    #[arg(long, value_enum, default_value = "batched")]
    pub mode: ModeArg,
    /// Circuit size 2^k (default: chosen from the model and batch; for
    /// leaves that will be aggregated, a narrow layout of at most 33 columns,
    /// the one with the fewest slots).
    #[arg(long)]
    pub k: Option<u32>,
    /// Steps per leaf proof in succinct mode: one circuit proves this many
    /// consecutive steps, so fewer (costly) aggregations are needed, and a
    /// step inside a span costs less than alone. `auto`: the longest span (up
    /// to 64 and the steps proven) whose estimated prover memory fits 8 GiB
    /// (10 GiB for leaves that will be aggregated, whose aggregations take
    /// more) and this machine. With --k, choose k to fit the span (about
    /// span times one step's cells).
    #[arg(long, default_value = "1", value_parser = parse_span)]
    pub span: SpanArg,
    /// Size 2^k of the aggregation circuits (succinct mode).
    #[arg(long, default_value_t = DEFAULT_AGG_K)]
    pub agg_k: u32,
    /// Output certificate file.
    #[arg(long)]
    pub out: PathBuf,
    /// In-process workers of the embedded cluster (a coordinator over a
    /// temporary store, as `zkaudit coordinator` runs it); the cores are
    /// split between them. 0 proves in a plain loop without the cluster.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: ProvingFiles,
}

/// `--span`: a number of steps, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanArg {
    /// This many steps per leaf.
    Steps(usize),
    /// Chosen from the estimated prover memory ([`auto_span`]).
    Auto,
}

/// Parses `--span`.
fn parse_span(s: &str) -> Result<SpanArg, String> {
    if s == "auto" {
        return Ok(SpanArg::Auto);
    }
    s.parse()
        .map(SpanArg::Steps)
        .map_err(|_| format!("expected a number of steps or `auto`, got {s:?}"))
}

/// Runs `zkaudit prove`.
pub fn prove(a: ProveArgs) -> anyhow::Result<()> {
    let t = Transcript::read_run(&a.run)?;
    let span = match (a.mode, a.span) {
        (ModeArg::Succinct, SpanArg::Steps(s)) if (1..=MAX_SPAN).contains(&s) => s,
        (ModeArg::Succinct, SpanArg::Steps(s)) => {
            bail!("--span must be in 1..={MAX_SPAN} or auto, got {s}")
        }
        (ModeArg::Succinct, SpanArg::Auto) => {
            let steps = a.steps.unwrap_or(t.num_steps()).min(t.num_steps());
            let step = StepShape::for_run(&t, 16);
            let budget = SpanBudget::for_machine();
            let s = auto_span(&step, steps, budget);
            let aggregated = steps > s;
            let (k, columns, bytes) = step.with_span(s).estimate_memory_as(aggregated);
            eprintln!(
                "--span auto: {s} steps per leaf (estimated k = {k}, {columns} columns, {:.1} GiB of the {:.1} GiB budget for {})",
                bytes as f64 / (1u64 << 30) as f64,
                budget.of(aggregated) as f64 / (1u64 << 30) as f64,
                if aggregated { "aggregated leaves" } else { "a single proof" }
            );
            s
        }
        (ModeArg::Batched, SpanArg::Steps(1)) => 1,
        (ModeArg::Batched, _) => bail!("--span applies to --mode succinct only"),
    };
    let shape = match a.k {
        Some(k) => {
            StepShape::check_k(k)?;
            StepShape::for_run(&t, k).with_span(span)
        }
        None => {
            let steps = a.steps.unwrap_or(t.num_steps()).min(t.num_steps());
            let aggregated = matches!(a.mode, ModeArg::Succinct) && steps > span;
            auto_shape_span(&t, span, aggregated)?
        }
    };
    let params = a.files.load_srs(shape.k)?;
    let agg_params = match a.mode {
        ModeArg::Batched => None,
        ModeArg::Succinct => {
            StepShape::check_k(a.agg_k)?;
            Some(a.files.load_srs(a.agg_k).with_context(|| {
                format!(
                    "succinct mode aggregates with circuits of 2^{} rows; create a large enough SRS with `zkaudit srs --k {}`",
                    a.agg_k, a.agg_k
                )
            })?)
        }
    };
    if a.workers > 0 {
        return prove_embedded(&a, &t, &shape, span);
    }
    let start = Instant::now();
    let key = match agg_params {
        None => Some(
            step_key(&a.files.keys, &shape, &params)
                .context("loading or generating the proving key")?,
        ),
        // Succinct mode loads the key of each span length itself.
        Some(_) => None,
    };
    let keyed = start.elapsed();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut step_time = None;
    // Without a terminal (logs, containers) progress is printed as lines.
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut progress = |p: RunProgress| {
        if plain {
            eprintln!("[{:>7.1}s] {}", start.elapsed().as_secs_f64(), describe(p));
        }
        match p {
            RunProgress::Started(n) => bar = Some(super::progress_bar(n as u64, "proving steps")),
            RunProgress::StepDone(d) => {
                if let Some(b) = &bar {
                    b.set_position(d as u64);
                }
            }
            RunProgress::AggStarted(n) => {
                step_time = Some(start.elapsed());
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                bar = Some(super::progress_bar(n as u64, "aggregating"));
            }
            RunProgress::AggKey(l) => {
                if let Some(b) = &bar {
                    b.set_message(format!("level {l}: loading or generating its key"));
                }
            }
            RunProgress::AggDone(l, x, y) => {
                if let Some(b) = &bar {
                    b.inc(1);
                    b.set_message(format!("level {l}: steps {x}..={y} done"));
                }
            }
        }
    };
    let cert = match (&agg_params, &key) {
        (None, Some(key)) => prove_run(&t, a.steps, &shape, &params, key, &mut progress)?,
        (None, None) => bail!("no proving key"),
        (Some(agg), _) => prove_run_succinct(
            &t,
            a.steps,
            &shape,
            &params,
            agg,
            &a.files.keys,
            &mut progress,
        )?,
    };
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    cert.write(&a.out)?;
    let n = (cert.statement.t_last - cert.statement.t_first + 1) as usize;
    let total = start.elapsed();
    let steps_done = step_time.unwrap_or(total);
    println!(
        "proved {n} steps (k = {}) in {:.1}s (keys {:.1}s, {:.1}s per step{}); wrote {} ({:?} mode, {} bytes)",
        shape.k,
        total.as_secs_f64(),
        keyed.as_secs_f64(),
        (steps_done - keyed).as_secs_f64() / n as f64,
        match step_time {
            Some(st) => format!(", aggregation {:.1}s", (total - st).as_secs_f64()),
            None => String::new(),
        },
        a.out.display(),
        cert.mode,
        std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0)
    );
    Ok(())
}

/// `zkaudit prove` on the embedded cluster.
fn prove_embedded(
    a: &ProveArgs,
    t: &Transcript,
    shape: &StepShape,
    span: usize,
) -> anyhow::Result<()> {
    let n = a.steps.unwrap_or(t.num_steps());
    if n == 0 || n > t.num_steps() {
        bail!(
            "--steps must be in 1..={} (the run's steps), got {n}",
            t.num_steps()
        );
    }
    if a.workers > 64 {
        bail!("--workers must be at most 64, got {}", a.workers);
    }
    let job = super::embedded::EmbeddedJob {
        run: &a.run,
        steps: n as u64,
        mode: match a.mode {
            ModeArg::Batched => zkaudit_proto::v1::Mode::Batched,
            ModeArg::Succinct => zkaudit_proto::v1::Mode::Succinct,
        },
        span: span as u32,
        k: shape.k,
        agg_k: a.agg_k,
        workers: a.workers,
        files: &a.files,
    };
    let r = super::embedded::prove(&job)?;
    let cert = Certificate::from_bytes(&r.cert, &a.out)?;
    zkaudit_model::transcript::write_atomic(&a.out, &r.cert)?;
    println!(
        "proved {n} steps (k = {}) in {:.1}s on {} worker{} x {} thread{} (proving time: steps {:.1}s, {:.1}s per step{}); wrote {} ({:?} mode, {} bytes)",
        shape.k,
        r.wall.as_secs_f64(),
        a.workers,
        if a.workers == 1 { "" } else { "s" },
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.leaf_prove.as_secs_f64(),
        r.leaf_prove.as_secs_f64() / n as f64,
        if r.agg_prove.is_zero() {
            String::new()
        } else {
            format!(", aggregation {:.1}s", r.agg_prove.as_secs_f64())
        },
        a.out.display(),
        cert.mode,
        r.cert.len()
    );
    Ok(())
}

/// One progress event in words.
fn describe(p: RunProgress) -> String {
    match p {
        RunProgress::Started(n) => format!("proving {n} steps"),
        RunProgress::StepDone(d) => format!("{d} steps proven"),
        RunProgress::AggStarted(n) => format!("aggregating: {n} aggregation proofs"),
        RunProgress::AggKey(l) => format!("level {l}: loading or generating its key"),
        RunProgress::AggDone(l, a, b) => format!("level {l}: steps {a}..={b} aggregated"),
    }
}

/// Arguments of `zkaudit verify`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit verify runs/digits/run.cert")]
pub struct VerifyArgs {
    /// Training certificate.
    pub cert: PathBuf,
    /// Audit proofs of this certificate's data or model to verify too.
    #[arg(long)]
    pub audit: Vec<PathBuf>,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: ProvingFiles,
}

/// Runs `zkaudit verify`.
pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let cert = Certificate::read(&a.cert)?;
    // No key is derived from parameters that have not been validated.
    let params = match cert.shape.check_public(&cert.public, None) {
        Ok(()) => a.files.load_srs(cert.shape.k)?,
        Err(e) => bail!("{} is NOT valid: {e}", a.cert.display()),
    };
    let start = Instant::now();
    let res = match (&cert.mode, &cert.root) {
        (Mode::Succinct, Some(root)) => {
            let agg_params = a.files.load_srs(root.agg_k).with_context(|| {
                format!(
                    "the certificate's aggregation circuits have 2^{} rows; the SRS must be at least that large",
                    root.agg_k
                )
            })?;
            check_statement(&cert, &params)?;
            eprintln!(
                "deriving the aggregation verifying keys (cached in {}; minutes the first time)",
                a.files.keys.display()
            );
            let (kind, rvk) = derive_root_key(&cert, &a.files.keys, &params, &agg_params)?;
            let start = Instant::now();
            let r = verify_succinct(&cert, &params, &agg_params, kind, &rvk);
            (r, start.elapsed())
        }
        _ => match check_statement(&cert, &params)
            .and_then(|_| step_vk(&a.files.keys, &cert.shape, &params, None))
        {
            Ok(vk) => {
                let start = Instant::now();
                (verify_certificate(&cert, &params, &vk), start.elapsed())
            }
            Err(e) => (Err(e), start.elapsed()),
        },
    };
    if let Err(e) = res.0 {
        bail!("{} is NOT valid: {e}", a.cert.display());
    }
    println!(
        "VALID ({:?} mode, {} proof{}, verified in {:.0} ms)",
        cert.mode,
        cert.num_proofs(),
        if cert.num_proofs() == 1 { "" } else { "s" },
        res.1.as_secs_f64() * 1e3
    );
    println!("{}", cert.describe());
    if cert.initial_salt.is_some() {
        println!(
            "the initial weights are the public seeded ones (c_0 recomputed from seed {})",
            cert.public.seed
        );
    }
    for path in &a.audit {
        super::audit::verify_against(&cert, path, &a.files)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_span, SpanArg};

    /// `--span` takes a number of steps or `auto`; anything else is refused by name.
    #[test]
    fn span_is_a_number_or_auto() {
        assert_eq!(parse_span("auto"), Ok(SpanArg::Auto));
        assert_eq!(parse_span("4"), Ok(SpanArg::Steps(4)));
        let err = parse_span("four").unwrap_err();
        assert!(err.contains("\"four\"") && err.contains("auto"), "{err}");
    }
}
