//! A hand-framed Kafka wire client for probing what a listener speaks.
//!
//! It is neither rskafka (what routegate uses) nor Kafka's Java client (the harness's
//! independent reader): requests are framed here byte by byte (request header v1, versions
//! without tagged fields) and only as much of each answer is read as a probe needs. That is
//! enough to show that a SASL listener demands authentication and checks the password, and that
//! an SSL listener speaks TLS with a certificate of the harness's test CA.
//!
//! Blocking std I/O with read and write timeouts: call it from `spawn_blocking`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Kafka error codes the probes compare with (`org.apache.kafka.common.protocol.Errors`).
pub const NONE: i16 = 0;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

const API_METADATA: i16 = 3;
const API_SASL_HANDSHAKE: i16 = 17;
const API_VERSIONS: i16 = 18;
const API_SASL_AUTHENTICATE: i16 = 36;

/// No Kafka answer a probe asks for comes near this; a larger size prefix is not Kafka talking
/// (e.g. a TLS alert read as a size).
const MAX_ANSWER: usize = 1 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(15);

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One connection to one listener.
pub struct WireClient {
    stream: Box<dyn Stream>,
    next_correlation_id: i32,
}

impl std::fmt::Debug for WireClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireClient")
            .field("next_correlation_id", &self.next_correlation_id)
            .finish_non_exhaustive()
    }
}

impl WireClient {
    /// A plain TCP connection to `addr` (`host:port`).
    pub fn plain(addr: &str) -> WireClient {
        WireClient::over(Box::new(connect(addr)))
    }

    /// A TLS connection to `addr` that trusts only `ca_pem` and checks that the certificate is
    /// valid for the address's IP. The handshake completes here; `Err` says why it did not.
    pub fn tls(addr: &str, ca_pem: &[u8]) -> Result<WireClient, String> {
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host}: {e}"))?;
        let mut tls = rustls::ClientConnection::new(trusting(ca_pem), name)
            .map_err(|e| format!("TLS setup: {e}"))?;
        let mut tcp = connect(addr);
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        }
        Ok(WireClient::over(Box::new(rustls::StreamOwned::new(
            tls, tcp,
        ))))
    }

    fn over(stream: Box<dyn Stream>) -> WireClient {
        WireClient {
            stream,
            next_correlation_id: 1,
        }
    }

    /// ApiVersions v0 (allowed before SASL authentication); its error code.
    pub fn api_versions(&mut self) -> Result<i16, String> {
        let answer = self.request(API_VERSIONS, 0, &[])?;
        Fields::new(&answer).i16()
    }

    /// Metadata v1 for no topic: the ports of the brokers it lists. A broker lists the
    /// listener the request came in on, so this also says which listener answered.
    pub fn metadata_ports(&mut self) -> Result<Vec<u16>, String> {
        let answer = self.request(API_METADATA, 1, &0i32.to_be_bytes())?;
        let mut fields = Fields::new(&answer);
        let brokers = fields.i32()?;
        (0..brokers)
            .map(|_| {
                let _node_id = fields.i32()?;
                let _host = fields.string()?;
                let port = fields.i32()?;
                let _rack = fields.string()?;
                u16::try_from(port).map_err(|_| format!("port {port} out of range"))
            })
            .collect()
    }

    /// SaslHandshake v1 for `mechanism`: the error code and the mechanisms the listener enables.
    pub fn sasl_handshake(&mut self, mechanism: &str) -> Result<(i16, Vec<String>), String> {
        let answer = self.request(API_SASL_HANDSHAKE, 1, &string(mechanism))?;
        let mut fields = Fields::new(&answer);
        let code = fields.i16()?;
        let n = fields.i32()?;
        let mechanisms = (0..n.max(0))
            .map(|_| fields.string()?.ok_or_else(|| "null mechanism".to_owned()))
            .collect::<Result<_, _>>()?;
        Ok((code, mechanisms))
    }

    /// SaslAuthenticate v1 with a PLAIN message (after a PLAIN handshake): the error code.
    pub fn sasl_plain(&mut self, username: &str, password: &str) -> Result<i16, String> {
        let message = format!("\0{username}\0{password}");
        let mut body = i32::try_from(message.len())
            .expect("short credentials")
            .to_be_bytes()
            .to_vec();
        body.extend_from_slice(message.as_bytes());
        let answer = self.request(API_SASL_AUTHENTICATE, 1, &body)?;
        Fields::new(&answer).i16()
    }

    /// Sends one request and returns the answer's body (after the correlation id). `Err` when
    /// the listener hangs up, times out or answers something that is not this request's answer.
    fn request(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<Vec<u8>, String> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut frame = Vec::with_capacity(64 + body.len());
        frame.extend_from_slice(&api_key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&correlation_id.to_be_bytes());
        frame.extend_from_slice(&string("routegate-wire-probe"));
        frame.extend_from_slice(body);
        let size = i32::try_from(frame.len()).expect("small request");
        let mut message = size.to_be_bytes().to_vec();
        message.extend_from_slice(&frame);
        let what = |e: std::io::Error| format!("api {api_key} v{version}: {e}");
        self.stream.write_all(&message).map_err(what)?;
        self.stream.flush().map_err(what)?;

        let mut size = [0; 4];
        self.stream.read_exact(&mut size).map_err(what)?;
        let size = u32::from_be_bytes(size) as usize;
        if !(4..=MAX_ANSWER).contains(&size) {
            return Err(format!(
                "api {api_key} v{version}: not a Kafka answer (size prefix {size:#010x})"
            ));
        }
        let mut answer = vec![0; size];
        self.stream.read_exact(&mut answer).map_err(what)?;
        let echoed = i32::from_be_bytes(answer[..4].try_into().expect("4 bytes"));
        if echoed != correlation_id {
            return Err(format!(
                "api {api_key} v{version}: answer for correlation id {echoed}, not {correlation_id}"
            ));
        }
        answer.drain(..4);
        Ok(answer)
    }
}

fn connect(addr: &str) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    tcp.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    tcp
}

fn trusting(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.expect("the CA is valid PEM"))
            .expect("a usable CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A Kafka (non-nullable) string: i16 length and UTF-8 bytes.
fn string(s: &str) -> Vec<u8> {
    let mut out = i16::try_from(s.len())
        .expect("short string")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Reads big-endian fields off an answer body.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(body: &'a [u8]) -> Self {
        Fields { rest: body }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("answer ends early: {n} bytes wanted"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    /// A nullable string (length -1 is `None`).
    fn string(&mut self) -> Result<Option<String>, String> {
        let len = self.i16()?;
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|e| e.to_string())
    }
}
