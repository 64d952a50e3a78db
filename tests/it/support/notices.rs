//! A test subscriber to statehold's hand-over notices: every notice
//! published while it runs, as (channel, token).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every notice published while it runs: (channel, token).
pub struct Observer {
    seen: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    /// Subscribed (`PSUBSCRIBE *:turns*`) on the server on `port` before it
    /// returns. On a Cluster, `PUBLISH` reaches every node's subscribers.
    pub fn start(port: u16) -> Observer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                let mut con = client.get_connection().unwrap();
                let mut pubsub = con.as_pubsub();
                pubsub.psubscribe("*:turns*").unwrap();
                pubsub
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(msg) = pubsub.get_message() {
                        let token: String = msg.get_payload().unwrap_or_default();
                        let channel = msg.get_channel_name().to_string();
                        seen.lock().unwrap().push((channel, token));
                    }
                }
            }
        });
        ready.recv().expect("the observer subscribed");
        Observer {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}
