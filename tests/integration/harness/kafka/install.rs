//! The cache that holds Kafka's jars and our compiled Java helpers.
//!
//! Layout under `<cargo target dir>/kafka-harness/`:
//!
//! ```text
//! install.lock      file lock: one fetch/compile at a time, across threads and processes
//! libs/             the jars from tests/kafka/pom.xml; libs/.stamp = hash of pom.xml
//! classes/          tests/kafka/src compiled by javac; classes/.stamp = hash of libs + sources
//! tls/              a test CA and a broker keystore (see `tls.rs`), made on first use
//! runs/<pid>/       per-process cluster directories (see `process.rs`)
//! ```
//!
//! Each step builds into a `*.tmp-<pid>` directory and renames it into place, so a crash in the
//! middle never leaves a half-filled cache that looks valid. The stamp is written into the temp
//! directory before the rename; a directory without a matching stamp is rebuilt.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where Kafka's pom, our Java sources and the log4j configs live in the source tree.
pub(crate) fn kafka_src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka")
}

/// Everything needed to start a JVM of the harness.
#[derive(Debug)]
pub(crate) struct Install {
    /// `java` of a JDK 17+.
    pub java: PathBuf,
    /// `<libs>/*:<classes>`; the JVM expands the `*` itself.
    pub classpath: String,
    /// `<target>/kafka-harness`.
    pub home: PathBuf,
}

/// The process-wide install, built on first use. Blocking: call it from `spawn_blocking`.
///
/// The outcome (also a failure) is kept, so every test reports the same problem instead of
/// retrying a failing Maven run once per test.
pub(crate) fn install() -> &'static Install {
    static INSTALL: OnceLock<Result<Install, String>> = OnceLock::new();
    match INSTALL.get_or_init(build) {
        Ok(install) => install,
        Err(message) => panic!("{message}"),
    }
}

fn build() -> Result<Install, String> {
    let home = target_dir().join("kafka-harness");
    fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    let java = java_home_tool("java");
    check_jdk_tool(&java, "-version", "version \"")?;

    let (libs, classes) = with_install_lock(&home, || {
        let src = kafka_src_dir();
        let pom = fs::read(src.join("pom.xml")).map_err(|e| format!("cannot read pom.xml: {e}"))?;
        let libs_stamp = format!("{:016x}", fnv1a(&pom));
        let libs = home.join("libs");
        ensure_dir(&libs, &libs_stamp, |tmp| {
            fetch_jars(&src.join("pom.xml"), tmp)
        })?;

        let mut classes_input = libs_stamp.into_bytes();
        let sources = java_sources(&src.join("src"))?;
        for source in &sources {
            classes_input.extend(source.to_string_lossy().as_bytes());
            classes_input
                .extend(fs::read(source).map_err(|e| format!("cannot read {source:?}: {e}"))?);
        }
        let classes = home.join("classes");
        let classes_stamp = format!("{:016x}", fnv1a(&classes_input));
        ensure_dir(&classes, &classes_stamp, |tmp| {
            compile(&java, &libs, &sources, tmp)
        })?;
        Ok((libs, classes))
    })?;
    let classpath = format!("{}/*:{}", libs.display(), classes.display());
    Ok(Install {
        java,
        classpath,
        home,
    })
}

/// Runs `f` while holding `<home>/install.lock`, an exclusive file lock that serialises cache
/// builds across threads and test processes. The lock is released when the file is closed.
pub(crate) fn with_install_lock<T>(
    home: &Path,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let lock_path = home.join("install.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let result = f();
    drop(lock);
    result
}

/// Makes sure `dir` holds the output of `make` for `stamp`; rebuilds it otherwise.
/// Call it under [`with_install_lock`].
pub(crate) fn ensure_dir(
    dir: &Path,
    stamp: &str,
    make: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    if fs::read_to_string(dir.join(".stamp")).is_ok_and(|s| s == stamp) {
        return Ok(());
    }
    let started = std::time::Instant::now();
    remove_temp_dirs(dir);
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    if let Err(message) = make(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(message);
    }
    fs::write(tmp.join(".stamp"), stamp).map_err(|e| format!("cannot write a stamp: {e}"))?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))?;
    eprintln!(
        "test harness: built {} in {:.1?}",
        dir.display(),
        started.elapsed()
    );
    Ok(())
}

/// Removes `<dir>.tmp-*` left by a build that was killed. Under the install lock no other
/// build runs, so every such directory is garbage.
fn remove_temp_dirs(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

const MAVEN_ADVICE: &str =
    "Apache Maven 3.6.3+ (Debian/Ubuntu: `apt-get install maven`) and put `mvn` on PATH";

fn fetch_jars(pom: &Path, out: &Path) -> Result<(), String> {
    check_maven()?;
    let output = Command::new("mvn")
        .args(["-q", "-B", "-Dstyle.color=never", "-f"])
        .arg(pom)
        .arg("dependency:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", out.display()))
        .arg("-DincludeScope=runtime")
        .output()
        .map_err(|e| format!("cannot run mvn: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "Kafka test harness: `mvn dependency:copy-dependencies` for {} failed ({}). It needs \
             network access to Maven Central (or a mirror in ~/.m2/settings.xml).\n{}\n{}",
            pom.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// maven-dependency-plugin 3.8.1 (pinned in the pom) needs Maven 3.6.3 or newer.
fn check_maven() -> Result<(), String> {
    let printed = check_tool(
        Command::new("mvn").args(["-B", "-Dstyle.color=never", "-v"]),
        MAVEN_ADVICE,
    )?;
    // `mvn -v` may colour its output; read only the digits and dots after the name.
    let version: Option<Vec<u32>> = printed.split_once("Apache Maven ").map(|(_, rest)| {
        let number: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        number
            .split('.')
            .map_while(|part| part.parse().ok())
            .collect()
    });
    match version {
        Some(version) if version >= vec![3, 6, 3] => Ok(()),
        _ => Err(format!(
            "Kafka test harness: `mvn -v` shows no Maven 3.6.3+ (it printed {printed:?}). \
             Install {MAVEN_ADVICE}."
        )),
    }
}

fn compile(java: &Path, libs: &Path, sources: &[PathBuf], out: &Path) -> Result<(), String> {
    let javac = java.with_file_name("javac");
    let javac = if javac.exists() {
        javac
    } else {
        PathBuf::from("javac")
    };
    check_jdk_tool(&javac, "-version", "javac ")?;
    let output = Command::new(&javac)
        .args(["--release", "17", "-encoding", "UTF-8", "-d"])
        .arg(out)
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .args(sources)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", javac.display()))?;
    if !output.status.success() {
        return Err(format!(
            "Kafka test harness: javac of tests/kafka/src failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

fn java_sources(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let entries =
            fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
                .path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|ext| ext == "java") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `$JAVA_HOME/bin/<tool>` if JAVA_HOME is set, else `<tool>` from PATH.
pub(crate) fn java_home_tool(tool: &str) -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin").join(tool).exists() => {
            Path::new(&home).join("bin").join(tool)
        }
        _ => PathBuf::from(tool),
    }
}

const JDK_ADVICE: &str = "a JDK 17 or newer (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`) \
     and put `java` and `javac` on PATH or set JAVA_HOME";

/// Runs `tool flag`, finds `marker` followed by the version, and requires major version 17+.
fn check_jdk_tool(tool: &Path, flag: &str, marker: &str) -> Result<(), String> {
    let output = check_tool(Command::new(tool).arg(flag), JDK_ADVICE)?;
    let major = output
        .split_once(marker)
        .and_then(|(_, rest)| rest.split(['.', '"', ' ', '\n', '-', '+']).next())
        .and_then(|major| major.parse::<u32>().ok());
    match major {
        Some(major) if major >= 17 => Ok(()),
        _ => Err(format!(
            "Kafka test harness: {} is too old or unrecognised (it printed {output:?}); Kafka 4.1 \
             needs Java 17+. Install {JDK_ADVICE}.",
            tool.display()
        )),
    }
}

/// Runs a version command; a missing tool becomes an error that says what to install.
fn check_tool(command: &mut Command, advice: &str) -> Result<String, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    match command.output() {
        Ok(output) if output.status.success() => Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
        Ok(output) => Err(format!(
            "Kafka test harness: `{program}` failed ({}). Install {advice}.",
            output.status
        )),
        Err(e) => Err(format!(
            "Kafka test harness: cannot run `{program}` ({e}). The tests start a real Kafka \
             broker and need it: install {advice}."
        )),
    }
}

/// Cargo's target directory: the ancestor of this test binary that holds `CACHEDIR.TAG`
/// (cargo writes one there), else `CARGO_TARGET_DIR`, else `<manifest>/target`.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().ok();
    if let Some(dir) = exe.as_deref().and_then(|exe| {
        exe.ancestors()
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    }) {
        return dir.to_path_buf();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// FNV-1a: a stable hash for the cache stamps (std's hashers may change between releases).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
