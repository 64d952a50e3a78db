//! statehold served inside the test process: `statehold::app::run_over` on
//! listeners bound here, on a runtime of its own thread, over the embedded
//! store behind [`Faulty`], with the config built as a typed
//! `statehold::config::Config` (no TOML text). For tests that need no
//! process killed: they start in milliseconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use statehold::app::{self, Listeners};
use statehold::config::{Config, RouteConfig};
use statehold::presets::Preset;
use tokio::sync::oneshot;

use super::faulty::{Faults, Faulty};
use super::{get, series_value, temp_dir, ADMIN_TOKEN};

pub struct InProcess {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// Makes the store fail while statehold serves.
    pub faults: Arc<Faults>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

/// The config of an in-process statehold in front of a bot on `bot`:
/// loopback listeners on free ports, the embedded store in `dir`, one
/// Telegram route at `/telegram`, no drain delay.
pub fn config(bot: u16, dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.drain_delay = Duration::ZERO;
    config.upstream.url = format!("http://127.0.0.1:{bot}");
    config.store.path = dir.join("state.db");
    config.admin.token = Some(statehold::config::Secret::new(ADMIN_TOKEN));
    config.routes = vec![RouteConfig {
        path: "/telegram".into(),
        namespace: "tg".into(),
        preset: Some(Preset::Telegram),
        ..RouteConfig::default()
    }];
    config
}

impl InProcess {
    /// Serves [`config`] as `edit` changes it (checked as a file would be).
    pub fn start(bot: u16, edit: impl FnOnce(&mut Config)) -> InProcess {
        let dir = temp_dir();
        let mut config = config(bot, dir.path());
        edit(&mut config);
        let config = config
            .checked(&HashMap::<String, String>::new())
            .unwrap_or_else(|e| panic!("config: {} {}", e.key, e.message));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listeners = runtime
            .block_on(Listeners::bind(&config))
            .expect("bind the listeners");
        let proxy = listeners.proxy.local_addr().expect("proxy address");
        let admin = listeners.admin.local_addr().expect("admin address");
        let store = app::open_embedded(&config).expect("open the embedded store");
        let (backend, faults) = Faulty::new(store);
        let (stop, stopped) = oneshot::channel::<()>();
        let served = std::thread::spawn(move || {
            let until = async {
                let _ = stopped.await;
            };
            runtime
                .block_on(app::run_over(listeners, config, backend, until))
                .map_err(|e| e.to_string())
        });
        InProcess {
            proxy,
            admin,
            faults,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    /// The stored snapshot of `namespace:id` through the admin API (`None`:
    /// 404).
    pub fn stored(&self, namespace: &str, id: &str) -> Option<serde_json::Value> {
        super::stored_at(self.admin, namespace, id).map(|record| record["state"].clone())
    }

    /// One series of `/metrics` (0 when not rendered yet).
    pub fn metric(&self, series: &str) -> f64 {
        let text = get(self.admin, "/metrics").expect("scrape").text();
        series_value(&text, series).unwrap_or(0.0)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            match served.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("statehold stopped with an error: {e}"),
                Err(_) if std::thread::panicking() => {}
                Err(_) => panic!("statehold's thread panicked"),
            }
        }
    }
}
