//! Headless Chromium for the dashboard test: Debian's `chromium`, driven by `playwright-core`
//! from npm, which this module installs on first use.
//!
//! Layout under `<cargo target dir>/browser-test/`:
//!
//! ```text
//! install.lock              file lock: one `npm ci` at a time, across threads and processes
//! modules/                  `npm ci` of tests/browser/package{,-lock}.json
//! modules/.stamp            hash of those two files; a directory without a matching stamp is rebuilt
//! ```
//!
//! `npm ci` runs in `modules.tmp-<pid>` and the result is renamed into place, so a killed install
//! never leaves a cache that looks valid. Playwright never downloads a browser here
//! (`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD`, `--ignore-scripts`; the depots' and CI's networks would
//! refuse it): it drives the system's Chromium (`/usr/bin/chromium`, or `$CHROMIUM`).
//!
//! A missing `node` (20+), `npm` or `chromium` panics with what to install: a browser test that
//! did not run is not a pass.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub(crate) use super::kafka::install::target_dir;
use super::kafka::install::{ensure_dir, fnv1a, with_install_lock};

/// Everything needed to run a script of `tests/browser/`.
#[derive(Debug)]
pub struct Browser {
    /// `node`, 20 or newer (what playwright-core requires).
    pub node: PathBuf,
    /// The `node_modules` directory holding `playwright-core`.
    pub modules: PathBuf,
    /// The Chromium executable Playwright drives.
    pub chromium: PathBuf,
}

/// Where the browser test's sources live.
pub fn browser_src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The process-wide install, built on first use. Blocking: call it from `spawn_blocking`.
/// A failure is kept, so every test reports the same problem.
pub fn install() -> &'static Browser {
    static INSTALL: OnceLock<Result<Browser, String>> = OnceLock::new();
    match INSTALL.get_or_init(build) {
        Ok(browser) => browser,
        Err(message) => panic!("{message}"),
    }
}

const NODE_ADVICE: &str = "Node.js 20+ with npm (Debian/Ubuntu: `apt-get install nodejs npm` \
     where the distribution ships 20+, else the NodeSource packages)";
const CHROMIUM_ADVICE: &str = "Debian's Chromium (`apt-get install chromium`), or set CHROMIUM \
     to a Chromium or Chrome executable";

fn build() -> Result<Browser, String> {
    let node = PathBuf::from("node");
    let printed = version_of(&node, NODE_ADVICE)?;
    let major = printed
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < 20) {
        return Err(format!(
            "browser test: `node --version` printed {printed:?}; playwright-core needs Node.js \
             20+. Install {NODE_ADVICE}."
        ));
    }
    version_of(Path::new("npm"), NODE_ADVICE)?;
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!(
            "browser test: no Chromium at {}. The dashboard test drives a real browser: install \
             {CHROMIUM_ADVICE}.",
            chromium.display()
        ));
    }

    let home = target_dir().join("browser-test");
    fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    let src = browser_src_dir();
    let mut manifest = Vec::new();
    for name in ["package.json", "package-lock.json"] {
        let path = src.join(name);
        manifest.extend(fs::read(&path).map_err(|e| format!("cannot read {path:?}: {e}"))?);
    }
    let stamp = format!("{:016x}", fnv1a(&manifest));
    let modules = home.join("modules");
    with_install_lock(&home, || {
        ensure_dir(&modules, &stamp, |tmp| npm_ci(&src, tmp))
    })?;
    Ok(Browser {
        node,
        modules: modules.join("node_modules"),
        chromium,
    })
}

/// `npm ci` of the committed manifest into `out`, without install scripts or browser downloads.
fn npm_ci(src: &Path, out: &Path) -> Result<(), String> {
    for name in ["package.json", "package-lock.json"] {
        fs::copy(src.join(name), out.join(name))
            .map_err(|e| format!("cannot copy {name} to {}: {e}", out.display()))?;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .args(["--loglevel", "error"])
        .current_dir(out)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .map_err(|e| format!("cannot run npm: {e}. Install {NODE_ADVICE}."))?;
    if !output.status.success() {
        return Err(format!(
            "browser test: `npm ci` of tests/browser failed ({}). It needs the npm registry (or a \
             mirror in ~/.npmrc).\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// Runs `<tool> --version`; a missing tool becomes an error that says what to install.
fn version_of(tool: &Path, advice: &str) -> Result<String, String> {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "browser test: `{} --version` failed ({}). Install {advice}.",
            tool.display(),
            out.status
        )),
        Err(e) => Err(format!(
            "browser test: cannot run `{}` ({e}). The dashboard test drives a real browser \
             with Playwright: install {advice}.",
            tool.display()
        )),
    }
}
