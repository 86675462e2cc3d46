//! A tiny OpenAI-compatible chat-completions server on 127.0.0.1 for the judge tests.
//!
//! Every request body is recorded. The reply is chosen from the LAST marker `<<…>>` in the
//! request body (the turn-2 prompt holds both answers, answer 2 last):
//! - `<<rate:X>>` → 200 with `"Rating: [[X]]"`;
//! - `<<garbage>>` → 200 with a reply that has no rating (a parse failure);
//! - `<<fail>>` → HTTP 500 every time (an HTTP failure after the retries);
//! - `<<flaky:X>>` → HTTP 500 on the first request for that body, then `[[X]]` (a retry works);
//! - no marker → `"Rating: [[5]]"`.
#![allow(dead_code)]
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct JudgeServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl JudgeServer {
    pub fn start() -> JudgeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            let mut flaky_seen: HashSet<String> = HashSet::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                let mut path = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if path.is_empty() {
                        path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    }
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let body = String::from_utf8_lossy(&body).into_owned();
                let value: serde_json::Value =
                    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                log.lock().unwrap().push(value.clone());
                let user = value
                    .pointer("/messages/1/content")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                let marker = user
                    .rfind("<<")
                    .and_then(|i| user[i + 2..].split_once(">>").map(|(m, _)| m.to_string()))
                    .unwrap_or_default();
                let (status, content) = if path != "/v1/chat/completions" {
                    (404, String::new())
                } else if marker == "fail" {
                    (500, String::new())
                } else if marker == "garbage" {
                    (
                        200,
                        "The answer is fine, I suppose. No score from me.".to_string(),
                    )
                } else if let Some(x) = marker.strip_prefix("rate:") {
                    (200, format!("Short explanation.\n\nRating: [[{x}]]"))
                } else if let Some(x) = marker.strip_prefix("flaky:") {
                    if flaky_seen.insert(user.clone()) {
                        (500, String::new())
                    } else {
                        (200, format!("Rating: [[{x}]]"))
                    }
                } else {
                    (200, "Rating: [[5]]".to_string())
                };
                let payload = if status == 200 {
                    serde_json::json!({
                        "id": "chatcmpl-test", "object": "chat.completion",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                     "finish_reason": "stop"}]
                    })
                    .to_string()
                } else {
                    "{\"error\": {\"message\": \"internal error\"}}".to_string()
                };
                let reason = match status {
                    200 => "OK",
                    404 => "Not Found",
                    _ => "Internal Server Error",
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                    payload.len()
                );
                let _ = stream.flush();
            }
        });
        JudgeServer { url, requests }
    }
}
