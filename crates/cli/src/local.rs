//! Wiring of the embedded local backend: one SQLite file plus an archive directory.

use anyhow::{Context, Result, bail};
use dlq_healer_core::engine::{Engine, EngineConfig, Ports};
use dlq_healer_core::ports::Clock;
use dlq_healer_core::rules::RuleSet;
use dlq_healer_local::{
    LocalAlerter, LocalArchive, LocalLedger, LocalMetrics, LocalQueues, LocalStore,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the local backend keeps its state, and where alerts go.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The SQLite file.
    pub db: PathBuf,
    /// The archive directory.
    pub archive_dir: PathBuf,
    /// Optional Slack-compatible webhook for alerts.
    pub webhook_url: Option<String>,
    /// How long one alert fingerprint stays quiet after it fired.
    pub alert_window: chrono::Duration,
}

/// Refuse, at start, a webhook URL that no alert could ever be delivered to: one that is not
/// an `http://` or `https://` URL with a host. The URL is not repeated: it is the webhook's
/// credential.
pub fn check_webhook_url(url: &str) -> Result<()> {
    let usable = url::Url::parse(url)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
    if !usable {
        bail!(
            "the alert webhook URL (--webhook-url or ALERT_WEBHOOK_URL; not shown, as it is the \
             webhook's credential) is not an http:// or https:// URL with a host: no alert \
             could be delivered to it"
        );
    }
    Ok(())
}

/// The opened local backend: every adapter over one store.
pub struct LocalBackend {
    /// The SQLite store.
    pub store: LocalStore,
    /// Queues.
    pub queues: Arc<LocalQueues>,
    /// Ledger.
    pub ledger: Arc<LocalLedger>,
    /// Archive.
    pub archive: Arc<LocalArchive>,
    /// Alerts.
    pub alerter: Arc<LocalAlerter>,
    /// Metrics.
    pub metrics: Arc<LocalMetrics>,
}

impl LocalBackend {
    /// Open (creating when missing) the store and the archive directory.
    pub fn open(settings: &LocalSettings, clock: Arc<dyn Clock>) -> Result<LocalBackend> {
        if let Some(url) = &settings.webhook_url {
            check_webhook_url(url)?;
        }
        let store = LocalStore::open_with_clock(&settings.db, clock)
            .with_context(|| format!("cannot open the local store {}", settings.db.display()))?;
        let archive =
            LocalArchive::new(store.clone(), &settings.archive_dir).with_context(|| {
                format!(
                    "cannot use the archive directory {}",
                    settings.archive_dir.display()
                )
            })?;
        let alerter = LocalAlerter::new(
            store.clone(),
            settings.alert_window,
            settings.webhook_url.clone(),
        );
        Ok(LocalBackend {
            queues: Arc::new(store.queues()),
            ledger: Arc::new(store.ledger()),
            archive: Arc::new(archive),
            alerter: Arc::new(alerter),
            metrics: Arc::new(LocalMetrics::new(store.clone())),
            store,
        })
    }

    /// A healing engine on the DLQ `dlq`.
    pub fn engine(&self, dlq: &str, rules: Arc<RuleSet>, config: EngineConfig) -> Result<Engine> {
        let db = self.store.path().display();
        let source = self.queues.queue(dlq).with_context(|| {
            format!(
                "cannot heal {dlq:?}: see the queues with `dlq-healer queue --db {db} list`, or \
                 create it with `dlq-healer queue --db {db} create {dlq}`"
            )
        })?;
        if let Some(redrive) = self.queues.queue_settings(dlq)?.and_then(|q| q.redrive) {
            tracing::warn!(
                "{dlq:?} has a dead-letter queue of its own ({:?} after {} receives): it looks like \
                 a source queue rather than a DLQ; every message in it will be healed as a dead \
                 letter (re-queued, archived or alerted on by the rules)",
                redrive.dead_letter_queue,
                redrive.max_receive_count
            );
        }
        if let Some(target) = &config.default_target
            && self.queues.queue_settings(target)?.is_none()
        {
            bail!(
                "cannot re-queue to {target:?} (--main-queue): it does not exist in {db}; see the \
                 queues with `dlq-healer queue --db {db} list`, or create it with \
                 `dlq-healer queue --db {db} create {target}`"
            );
        }
        let ports = Ports {
            dlq: Arc::new(source),
            queues: self.queues.clone(),
            ledger: self.ledger.clone(),
            archive: self.archive.clone(),
            alerter: self.alerter.clone(),
            metrics: self.metrics.clone(),
        };
        Ok(Engine::new(rules, ports, self.store.clock(), config))
    }
}

/// The archive directory that goes with a database when none is given: `<db stem>-archive`.
pub fn default_archive_dir(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("dlq-healer");
    db.with_file_name(format!("{stem}-archive"))
}

#[cfg(test)]
mod webhook_url_tests {
    use super::check_webhook_url;

    #[test]
    fn a_webhook_url_is_http_or_https_with_a_host() {
        for usable in [
            "https://hooks.slack.com/services/T0/B0/secret",
            "http://127.0.0.1:9000/hook",
            "HTTPS://Example.com/x",
        ] {
            assert!(check_webhook_url(usable).is_ok(), "{usable}");
        }
        for unusable in [
            "ftp://hooks.example.com/secret",
            "not a url secret",
            "https://",
            "mailto:secret@example.com",
            "",
        ] {
            let refusal = check_webhook_url(unusable).unwrap_err().to_string();
            assert!(
                refusal.contains("http:// or https://"),
                "{unusable}: {refusal}"
            );
            assert!(
                !refusal.contains("secret"),
                "the URL is not repeated: {refusal}"
            );
        }
    }
}
