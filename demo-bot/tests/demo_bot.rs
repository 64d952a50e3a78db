//! The demo bot on its own: it binds port 0 and says where, answers the
//! walkthrough's first step, and reports its flow in `X-Statehold-State`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn the_demo_bot_answers_and_reports_its_state() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_statehold-demo-bot"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo bot");
    let mut line = String::new();
    BufReader::new(child.stderr.take().expect("stderr"))
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    let body = r#"{"update_id":1,"message":{"message_id":1,"chat":{"id":5,"type":"private"},"from":{"id":5},"text":"/start"}}"#;
    let mut stream = TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "POST /telegram HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    child.kill().ok();
    child.wait().ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Welcome! What's your name?"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-statehold-state: "),
        "{answer}"
    );
}
