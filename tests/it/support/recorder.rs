//! A recording bot: a raw HTTP/1.1 server on loopback that stores exactly
//! what reaches it (request line, header lines as sent, body bytes) and
//! answers with raw bytes the test chooses, so tests can make the bot
//! misbehave in ways a framework would not (HTTP/1.0, compressed answers,
//! unparseable JSON, hundreds of headers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the bot received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// Header lines as sent, names unchanged.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }

    /// Header names as a WSGI/CGI server sees them: upper case, `-` as `_`.
    pub fn cgi_names(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(n, _)| n.to_ascii_uppercase().replace('-', "_"))
            .collect()
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Responder = dyn Fn(&Recorded) -> Vec<u8> + Send + Sync;

pub struct Recorder {
    pub port: u16,
    seen: Arc<Mutex<Vec<Recorded>>>,
    respond: Arc<Mutex<Arc<Responder>>>,
}

/// A 200 answer with a JSON body, framed by Content-Length.
pub fn json_answer(body: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    answer(
        "HTTP/1.1 200 OK",
        "application/json",
        body.as_bytes(),
        extra_headers,
    )
}

/// Any answer: status line, content type, body, extra header lines.
pub fn answer(
    status_line: &str,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!(
        "{status_line}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A bot that reports what each Telegram update's text says: `CLEAR` a
/// clear, `KEEP` nothing, `ROLLBACK <v>` a rollback
/// (`X-Statehold-Rollback`), `SLOW <json>` that snapshot after half a
/// second, anything else the text as the snapshot (`X-Statehold-State`).
pub fn reporting_bot() -> Recorder {
    let bot = Recorder::start();
    bot.respond(|req| {
        let text = req.update_text();
        let text = text.as_str();
        let report = match text.split_once(' ') {
            _ if text == "CLEAR" => ("x-statehold-clear", "1".to_string()),
            _ if text == "KEEP" => ("x-bot", "no report".to_string()),
            Some(("ROLLBACK", to)) => ("x-statehold-rollback", to.to_string()),
            Some(("SLOW", json)) => {
                std::thread::sleep(Duration::from_millis(500));
                ("x-statehold-state", json.to_string())
            }
            _ => ("x-statehold-state", text.to_string()),
        };
        json_answer(
            r#"{"method":"sendMessage","text":"ok"}"#,
            &[(report.0, &report.1)],
        )
    });
    bot
}

impl Recorded {
    /// The Telegram update's message text ("" when there is none).
    pub fn update_text(&self) -> String {
        let update: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        update["message"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Recorder {
    /// Listens on a free loopback port; answers `{"ok":true}` until told
    /// otherwise.
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Mutex<Arc<Responder>>> = Arc::new(Mutex::new(Arc::new(|_: &Recorded| {
            json_answer("{\"ok\":true}", &[])
        })));
        let (s, r) = (Arc::clone(&seen), Arc::clone(&respond));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                std::thread::spawn(move || serve(stream, &s, &r));
            }
        });
        Recorder {
            port,
            seen,
            respond,
        }
    }

    /// How the bot answers from now on.
    pub fn respond(&self, f: impl Fn(&Recorded) -> Vec<u8> + Send + Sync + 'static) {
        *self.respond.lock().unwrap() = Arc::new(f);
    }

    /// Everything received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the bot received a request")
    }
}

/// Serves one connection: request after request (keep-alive) until the
/// peer closes or an answer says `HTTP/1.0` (then the connection closes).
fn serve(stream: TcpStream, seen: &Mutex<Vec<Recorded>>, respond: &Mutex<Arc<Responder>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        seen.lock().unwrap().push(req.clone());
        let responder = Arc::clone(&respond.lock().unwrap());
        let raw = responder(&req);
        if writer.write_all(&raw).is_err() {
            return;
        }
        if raw.starts_with(b"HTTP/1.0") {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?.to_string(), words.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let find = |name: &str| super::find_header(&headers, name).map(str::to_string);
    let mut body = Vec::new();
    if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}
