//! A configuration mistake on a secret key stops the real binary with a message that names the
//! key and where it was set (file and line, `.env` line, environment variable), and never the
//! secret's value: startup errors end up in journals and CI logs.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// `routegate serve` in `dir` (where a `.env` is picked up) with `args` and `env`; a gateway
/// that is still running after 20 s (it accepted the configuration) is killed.
fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"));
    cmd.arg("serve")
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("state"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ROUTEGATE_") || k.starts_with("KAFKA_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run routegate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll routegate").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child
        .wait_with_output()
        .expect("collect routegate's output")
}

/// The run failed, and its stderr names every one of `names` and does not contain `secret`.
fn refused_without_echo(out: &Output, names: &[&str], secret: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a bad secret: {stderr}");
    for name in names {
        assert!(
            stderr.contains(name),
            "stderr does not name {name:?}: {stderr}"
        );
    }
    assert!(
        !stderr.contains(secret),
        "stderr echoes the secret: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret),
        "stdout echoes the secret"
    );
}

fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("routegate.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn api_tokens_given_as_a_string_in_the_file_is_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[http]\napi_tokens = \"tok-Zq81-secret-value\"\n",
    );
    let out = serve(dir.path(), &["--config", &file], &[]);
    refused_without_echo(&out, &["http.api_tokens", &file], "Zq81-secret");
}

#[test]
fn a_numeric_sasl_password_in_the_file_is_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[kafka.sasl]\nmechanism = \"plain\"\nusername = \"svc\"\npassword = 918273645546372819\n",
    );
    let out = serve(dir.path(), &["--config", &file], &[]);
    refused_without_echo(&out, &["kafka.sasl.password", &file], "918273645546");
}

#[test]
fn a_toml_syntax_error_on_a_secret_line_names_the_line_but_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[kafka.sasl]\nusername = \"svc\"\npassword = \"pw-Kx42-unterminated\n",
    );
    let out = serve(dir.path(), &["--config", &file], &[]);
    refused_without_echo(
        &out,
        &[&file, "line 3", "kafka.sasl.password"],
        "Kx42-unterminated",
    );
}

#[test]
fn a_dotenv_parse_error_on_a_secret_line_names_the_variable_but_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "ROUTEGATE_KAFKA_CLIENT_ID=edge\nROUTEGATE_KAFKA_SASL_PASSWORD=\"pw-Dv77-unterminated\n",
    )
    .unwrap();
    let out = serve(dir.path(), &[], &[]);
    refused_without_echo(
        &out,
        &[".env", "line 2", "ROUTEGATE_KAFKA_SASL_PASSWORD"],
        "Dv77-unterminated",
    );
}

#[test]
fn an_unusable_token_in_an_environment_variable_is_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(
        dir.path(),
        &[],
        &[(
            "ROUTEGATE_HTTP_API_TOKENS",
            "good-token-0123456789,bäd-Ev93-tökén",
        )],
    );
    refused_without_echo(
        &out,
        &["http.api_tokens", "ROUTEGATE_HTTP_API_TOKENS"],
        "Ev93",
    );
}

#[test]
fn an_unusable_token_in_the_token_file_names_its_line_but_not_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# ops\nfile-token-0123456789\nbad token Tf55 with spaces\n",
    )
    .unwrap();
    let out = serve(
        dir.path(),
        &[],
        &[("ROUTEGATE_HTTP_API_TOKENS_FILE", tokens.to_str().unwrap())],
    );
    refused_without_echo(
        &out,
        &["http.api_tokens_file", tokens.to_str().unwrap(), "line 3"],
        "Tf55",
    );
}
