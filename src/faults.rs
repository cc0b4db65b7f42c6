//! Fault injection points, for tests that must see storage fail, a thread panic or the process
//! die at an exact place.
//!
//! Built on the `fail` crate and inert unless its `failpoints` feature is compiled in, which only
//! the test build does (a dev-dependency turns it on): a release binary carries no fault point,
//! and [`check`] folds to `Ok(())`. In a test build, points are configured in-process with
//! `fail::cfg(point, "return(ACTION)")` or, for a child process, with the `FAILPOINTS`
//! environment variable (`FAILPOINTS='outbox-after-flush=40*off->return(crash)'`), which
//! [`install_from_env`] reads at start.
//!
//! An action is `crash` (abort the process: no destructor, no flush — a `kill -9` at that line),
//! `panic`, `eio` or `enospc` (the operation fails with that I/O error). `ACTION@SCOPE` applies
//! only where the point's scope (e.g. the outbox's directory) contains `SCOPE`, so tests running
//! side by side in one process do not trip over each other's faults.

use std::io;
use std::path::Path;

/// Fail, panic or die here if the point is configured for this scope (e.g. an outbox's
/// directory). Costs one branch when fault points are compiled out.
pub fn check(point: &str, scope: &Path) -> io::Result<()> {
    if !fail::has_failpoints() {
        return Ok(());
    }
    let Some(Some(action)) = fail::eval(point, |arg| arg) else {
        return Ok(());
    };
    let (kind, applies) = match action.split_once('@') {
        Some((kind, want)) => (kind, scope.to_string_lossy().contains(want)),
        None => (action.as_str(), true),
    };
    if !applies {
        return Ok(());
    }
    match kind {
        "crash" => {
            eprintln!("fault point {point}: crashing");
            std::process::abort()
        }
        "panic" => panic!("fault point {point}: injected panic"),
        "eio" => Err(io::Error::from_raw_os_error(EIO)),
        "enospc" => Err(io::Error::from_raw_os_error(ENOSPC)),
        other => panic!("fault point {point}: unknown action {other:?}"),
    }
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// Configure points from `FAILPOINTS` when this is a test build; the guard keeps them for the
/// life of the process.
pub fn install_from_env() -> Option<impl Sized> {
    (fail::has_failpoints() && std::env::var_os("FAILPOINTS").is_some())
        .then(fail::FailScenario::setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_apply_within_their_scope_only() {
        fail::cfg("faults-self-test", "return(eio@/scope-a)").unwrap();
        assert!(check("faults-self-test", Path::new("/tmp/scope-b")).is_ok());
        let e = check("faults-self-test", Path::new("/tmp/scope-a/db")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO));
        fail::cfg("faults-self-test", "1*return(enospc)->off").unwrap();
        let anywhere = Path::new("anywhere");
        let e = check("faults-self-test", anywhere).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ENOSPC));
        assert!(check("faults-self-test", anywhere).is_ok(), "only once");
        fail::remove("faults-self-test");
    }
}
