//! One server instance's lifecycle, shared by the binary and the in-process tests: take the
//! data directory, open the engine, bind, serve until shutdown, save, release.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::{run, Shared, ShutdownRequest};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::engine::BackgroundTasks;

/// An opened, bound, not yet serving instance.
pub struct Instance {
    shared: Arc<Shared>,
    listener: TcpListener,
    /// The TLS port's listener, when `tls.port` is set.
    tls_listener: Option<TcpListener>,
    background: BackgroundTasks,
    /// Holds the directory lock until the instance is gone.
    dir: Arc<DataDir>,
}

impl Instance {
    pub async fn open(
        config: Config,
        config_file: Option<std::path::PathBuf>,
    ) -> Result<Instance, String> {
        let dir = Arc::new(DataDir::lock(&config.storage.dir)?);
        let started = std::time::Instant::now();
        // Users are checked before the engine opens, so a bad ACL file fails at once.
        let acl = crate::commands::acl::Acl::from_config(&config.security)?;
        let engine = {
            let (dir, config) = (Arc::clone(&dir), config.clone());
            tokio::task::spawn_blocking(move || dir.open_engine(&config))
                .await
                .map_err(|err| format!("engine startup panicked: {err}"))??
        };
        engine.set_busy_reply_threshold(std::time::Duration::from_millis(
            config.limits.busy_reply_threshold_ms,
        ));
        let engine = Arc::new(engine);
        let background = engine.start_background_tasks();
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            keys = engine.tier_report().keys_per_db.iter().sum::<u64>(),
            "engine opened"
        );
        let address = format!("{}:{}", config.server.bind, config.server.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|err| format!("cannot listen on {address}: {err}"))?;
        let port = listener
            .local_addr()
            .map_err(|err| format!("cannot read the bound address: {err}"))?
            .port();
        let tls = match config.tls.port {
            0 => None,
            tls_port => {
                let acceptor = crate::tls::server_config(&config.tls)?;
                let address = format!("{}:{tls_port}", config.server.bind);
                let tls_listener = TcpListener::bind(&address)
                    .await
                    .map_err(|err| format!("cannot listen for TLS on {address}: {err}"))?;
                tracing::info!(port = tls_port, "Ready to accept connections tls");
                Some((acceptor, tls_listener))
            }
        };
        let audit_log = config.security.audit_log.clone();
        let shared = Shared::new(engine, config, config_file, port, acl);
        crate::commands::replication::Replication::start(&shared)?;
        if let Some(path) = audit_log {
            shared.audit.open(&path)?;
        }
        let tls_listener = tls.map(|(acceptor, listener)| {
            *shared.tls.write() = Some(acceptor);
            listener
        });
        Ok(Instance {
            shared,
            listener,
            tls_listener,
            background,
            dir,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Serves until shutdown is requested, then saves (unless NOSAVE) and releases.
    pub async fn serve(self) -> Result<(), String> {
        let Instance {
            shared,
            listener,
            tls_listener,
            background,
            dir,
        } = self;
        tracing::info!(port = shared.port, "Ready to accept connections tcp");
        let request = run(listener, tls_listener, Arc::clone(&shared)).await;
        drop(background);
        let save = matches!(request, ShutdownRequest::Stop { save: true });
        let engine = Arc::clone(&shared.engine);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match dir.close_engine(&engine, save)? {
                Some(checkpoint) => tracing::info!(
                    entries = checkpoint.entries_written,
                    lsn = checkpoint.lsn,
                    seconds = started.elapsed().as_secs_f64(),
                    "saved; ready to exit"
                ),
                None if engine.wal().is_some() => {
                    tracing::warn!(
                        "shutting down without a checkpoint: the next start replays the WAL"
                    )
                }
                None => tracing::warn!("shutting down without saving: the next start begins empty"),
            }
            Ok(())
        })
        .await
        .map_err(|err| format!("shutdown panicked: {err}"))?
    }
}
