//! Who may call what. Clients present a client token (one per client or
//! team; a job belongs to the token that submitted it), workers the worker
//! token, and an optional admin token may also cancel any job. The `Jobs`
//! service accepts client and admin tokens only, the `Workers` service the
//! worker token only, so a client cannot lease tasks or download
//! transcripts, and a worker cannot submit, cancel or fetch certificates.
//! Tokens are compared in constant time and must be at least
//! [`MIN_TOKEN_BYTES`] long and pairwise distinct.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

/// Shortest bearer token the coordinator accepts: an empty or short token
/// would let anyone who guesses it in.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The coordinator's credentials.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// Tokens clients present; a job belongs to the one that submitted it.
    pub clients: Vec<String>,
    /// The token workers present.
    pub worker: String,
    /// A client token that may also cancel any job.
    pub admin: Option<String>,
}

impl Tokens {
    /// Checks that there is a client token, every token is long enough, and
    /// no two are equal (roles must not merge).
    pub fn check(&self) -> Result<(), String> {
        if self.clients.is_empty() {
            return Err(
                "no client token: set ZKAUDIT_TOKEN (clients) besides ZKAUDIT_WORKER_TOKEN".into(),
            );
        }
        let all: Vec<(&str, &str)> = self
            .clients
            .iter()
            .map(|t| ("a client token", t.as_str()))
            .chain([("the worker token", self.worker.as_str())])
            .chain(self.admin.iter().map(|t| ("the admin token", t.as_str())))
            .collect();
        for (what, t) in &all {
            if t.len() < MIN_TOKEN_BYTES {
                return Err(format!(
                    "{what} is {} bytes long; at least {MIN_TOKEN_BYTES} are needed (generate one with `head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)",
                    t.len()
                ));
            }
        }
        for (i, (a, x)) in all.iter().enumerate() {
            if let Some((b, _)) = all[i + 1..]
                .iter()
                .find(|(_, y)| ct_eq(x.as_bytes(), y.as_bytes()))
            {
                return Err(format!(
                    "{a} and {b} are equal: clients, workers and the admin need tokens of their own"
                ));
            }
        }
        Ok(())
    }
}

/// The authenticated caller of a `Jobs` call (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who owns the jobs it submits: a digest of its token (`anonymous`
    /// without authentication).
    pub owner: String,
    /// It holds the admin token (or authentication is off).
    pub admin: bool,
}

/// The owner name of a token: the first 16 hex digits of its SHA-256.
pub fn owner_of(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..8])
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y))
        == 0
}

fn bearer<'a>(req: &'a Request<()>, which: &str) -> Result<&'a str, Status> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Status::unauthenticated(format!(
                "missing `authorization: Bearer <token>`: pass {which}"
            ))
        })
}

/// Interceptor of the `Jobs` service: a client or the admin token.
pub fn jobs(
    tokens: Option<Arc<Tokens>>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let caller = match &tokens {
            None => Caller {
                owner: "anonymous".into(),
                admin: true,
            },
            Some(t) => {
                let got = bearer(&req, "--token or set ZKAUDIT_TOKEN")?;
                let admin = t
                    .admin
                    .as_deref()
                    .is_some_and(|a| ct_eq(got.as_bytes(), a.as_bytes()));
                let client = t
                    .clients
                    .iter()
                    .any(|c| ct_eq(got.as_bytes(), c.as_bytes()));
                if !admin && !client {
                    return Err(Status::unauthenticated(
                        "invalid token: it does not match the coordinator's client tokens (clients present ZKAUDIT_TOKEN, not the worker token)",
                    ));
                }
                Caller {
                    owner: owner_of(got),
                    admin,
                }
            }
        };
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// Interceptor of the `Workers` service: the worker token only.
pub fn workers(
    tokens: Option<Arc<Tokens>>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        if let Some(t) = &tokens {
            let got = bearer(&req, "--worker-token or set ZKAUDIT_WORKER_TOKEN")?;
            if !ct_eq(got.as_bytes(), t.worker.as_bytes()) {
                return Err(Status::unauthenticated(
                    "invalid token: it does not match the coordinator's worker token (workers present ZKAUDIT_WORKER_TOKEN)",
                ));
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            clients: vec![
                "client-token-aaaaaaaa".into(),
                "client-token-bbbbbbbb".into(),
            ],
            worker: "worker-token-cccccccc".into(),
            admin: Some("admin-token-dddddddd".into()),
        }
    }

    fn call(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    #[test]
    fn each_service_takes_its_own_role() {
        let t = Some(Arc::new(tokens()));
        let (mut j, mut w) = (jobs(t.clone()), workers(t));
        let c = j(call(Some("client-token-aaaaaaaa"))).unwrap();
        let caller = c.extensions().get::<Caller>().unwrap();
        assert!(!caller.admin);
        assert_eq!(caller.owner, owner_of("client-token-aaaaaaaa"));
        let other = j(call(Some("client-token-bbbbbbbb"))).unwrap();
        assert_ne!(
            other.extensions().get::<Caller>().unwrap().owner,
            caller.owner
        );
        assert!(
            j(call(Some("admin-token-dddddddd")))
                .unwrap()
                .extensions()
                .get::<Caller>()
                .unwrap()
                .admin
        );
        // Roles do not cross, and nothing opens without a token.
        assert!(j(call(Some("worker-token-cccccccc"))).is_err());
        assert!(w(call(Some("client-token-aaaaaaaa"))).is_err());
        assert!(w(call(Some("admin-token-dddddddd"))).is_err());
        w(call(Some("worker-token-cccccccc"))).unwrap();
        assert!(j(call(None)).is_err() && w(call(None)).is_err());
        assert!(j(call(Some(""))).is_err());
    }

    #[test]
    fn weak_or_shared_tokens_are_refused() {
        tokens().check().unwrap();
        let mut t = tokens();
        t.worker = t.clients[0].clone();
        assert!(t.check().unwrap_err().contains("equal"));
        let mut t = tokens();
        t.clients.push(String::new());
        assert!(t.check().unwrap_err().contains("at least 16"));
        let mut t = tokens();
        t.worker = "short".into();
        assert!(t.check().unwrap_err().contains("worker token"));
        let mut t = tokens();
        t.clients.clear();
        assert!(t.check().is_err());
    }
}
