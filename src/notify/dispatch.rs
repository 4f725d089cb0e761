//! The fan-out: one bounded queue and one worker per channel, so a slow
//! channel never holds up another (nor a deploy); each message is tried with
//! a time limit per attempt and retried on [`Backoff`] after a transient
//! failure; every outcome is logged and counted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::config::MAX_BACKOFF;
use super::{
    email, metric, slack, teams, webhook, Channel, Delivery, Notification, NotifyConfig, NotifyError,
    SendError,
};
use crate::backoff::Backoff;
use crate::tls::install_crypto_provider;

/// How one channel is doing, for start-up logs and `/healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelStatus {
    pub channel: &'static str,
    /// False when the last check or the last send failed.
    pub ok: bool,
    /// What the last check or send found, without secrets.
    pub detail: String,
    /// Messages delivered, given up on, and dropped unsent since start.
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Messages waiting or being sent right now.
    pub queued: usize,
}

/// Sends notifications in the background; cheap to clone, every clone is
/// the same notifier.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Vec<Arc<ChannelState>>,
    /// One sender per channel, in the order of `channels`. `None` once
    /// [`Notifier::shutdown`] has begun: dropping the senders is what lets
    /// the workers drain their queue and end. A std mutex, because it is only
    /// held for non-blocking `try_send`s, never across an `.await`.
    queues: Mutex<Option<Vec<mpsc::Sender<Arc<Notification>>>>>,
    /// The worker tasks, taken by `shutdown` to wait for (or abort) them.
    workers: Mutex<Vec<JoinHandle<()>>>,
    delivery: Delivery,
}

/// One channel and what is known about it. Shared by the worker task (which
/// updates it) and the handle (which reads it for `status`).
struct ChannelState {
    channel: Arc<dyn Channel>,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Accepted into the queue and not yet finished.
    pending: AtomicUsize,
    /// `(ok, detail)` from the last check or send. A std mutex: held for a copy, never across an `.await`.
    last: Mutex<(bool, String)>,
}

impl ChannelState {
    fn name(&self) -> &'static str {
        self.channel.name()
    }

    /// One message fewer pending. Saturating: `shutdown` may zero the count
    /// while an aborted worker is finishing its last message.
    fn finish_one(&self) {
        // The closure never returns None, so the update cannot fail.
        if self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(1))
            })
            .is_err()
        {}
    }

    fn set_last(&self, ok: bool, detail: String) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = (ok, detail);
    }

    fn status(&self) -> ChannelStatus {
        let (ok, detail) = self.last.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ChannelStatus {
            channel: self.name(),
            ok,
            detail,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.pending.load(Ordering::Relaxed),
        }
    }
}

impl Notifier {
    /// Builds every configured channel and starts one sending task per
    /// channel. Must be called within a tokio runtime. With no channel
    /// configured, the notifier accepts and discards messages.
    ///
    /// Nothing is sent or checked here: call [`Notifier::check`] at start-up
    /// to learn whether the receivers are reachable.
    pub fn start(config: &NotifyConfig) -> Result<Notifier, NotifyError> {
        install_crypto_provider();
        let timeout = config.delivery.timeout;
        let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
        if let Some(url) = &config.slack {
            channels.push(Arc::new(webhook::JsonWebhook::new(
                "slack",
                url.clone(),
                timeout,
                slack::payload,
            )?));
        }
        if let Some(url) = &config.teams {
            channels.push(Arc::new(webhook::JsonWebhook::new(
                "teams",
                url.clone(),
                timeout,
                teams::payload,
            )?));
        }
        if let Some(email) = &config.email {
            channels.push(Arc::new(email::Email::new(email, timeout)?));
        }
        Ok(Notifier::with_channels(channels, config.delivery.clone()))
    }

    /// Starts a notifier over the given channels; [`Notifier::start`] uses it,
    /// and tests can pass their own [`Channel`].
    pub fn with_channels(channels: Vec<Arc<dyn Channel>>, delivery: Delivery) -> Notifier {
        let mut states = Vec::new();
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for channel in channels {
            let state = Arc::new(ChannelState {
                channel,
                sent: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                pending: AtomicUsize::new(0),
                last: Mutex::new((true, "not checked yet".into())),
            });
            let (tx, rx) = mpsc::channel(delivery.queue_capacity.max(1));
            workers.push(tokio::spawn(run_worker(state.clone(), rx, delivery.clone())));
            states.push(state);
            queues.push(tx);
        }
        if !states.is_empty() {
            let names: Vec<&str> = states.iter().map(|s| s.name()).collect();
            info!(channels = ?names, "Notifications are on.");
        }
        Notifier {
            inner: Arc::new(Inner {
                channels: states,
                queues: Mutex::new(Some(queues)),
                workers: Mutex::new(workers),
                delivery,
            }),
        }
    }

    /// Queues `notification` for every channel and returns at once: it never
    /// waits on the network. A channel whose queue is full drops it, with a
    /// warning and a count.
    pub fn notify(&self, notification: Notification) {
        let notification = Arc::new(notification);
        let queues = self.inner.queues.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, state) in self.inner.channels.iter().enumerate() {
            let Some(tx) = queues.as_ref().and_then(|q| q.get(index)) else {
                emit_dropped(state, &notification, "the notifier is shut down");
                continue;
            };
            // Counted before the send, so the worker can never see a negative count.
            state.pending.fetch_add(1, Ordering::Relaxed);
            let reason = match tx.try_send(notification.clone()) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => "the queue is full",
                Err(mpsc::error::TrySendError::Closed(_)) => "the sending task has stopped",
            };
            state.finish_one();
            emit_dropped(state, &notification, reason);
        }
    }

    /// Checks every channel now (TCP connect for webhooks, an SMTP
    /// connection with login for email), remembers the result for
    /// [`Notifier::status`], and returns it.
    pub async fn check(&self) -> Vec<ChannelStatus> {
        let limit = self.inner.delivery.timeout;
        let checks = self.inner.channels.iter().map(|state| async move {
            let result = match tokio::time::timeout(limit, state.channel.check()).await {
                Ok(result) => result,
                Err(_) => Err(SendError::Timeout(limit)),
            };
            match result {
                Ok(detail) => {
                    info!(channel = state.name(), detail = %detail, "Notification channel is reachable.");
                    state.set_last(true, detail);
                }
                Err(error) => {
                    warn!(channel = state.name(), error = %error, "Notification channel check failed.");
                    state.set_last(false, format!("check failed: {error}"));
                }
            }
            state.status()
        });
        futures_util::future::join_all(checks).await
    }

    /// The last known state of every channel, without doing any I/O.
    pub fn status(&self) -> Vec<ChannelStatus> {
        self.inner.channels.iter().map(|s| s.status()).collect()
    }

    /// Stops taking messages, sends those still queued, and waits up to
    /// `timeout` for that; whatever is still unsent then is dropped and
    /// counted. Later calls to `notify` drop their message.
    pub async fn shutdown(&self, timeout: Duration) {
        drop(
            self.inner
                .queues
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut workers =
            std::mem::take(&mut *self.inner.workers.lock().unwrap_or_else(PoisonError::into_inner));
        if workers.is_empty() {
            return;
        }
        let drained = tokio::time::timeout(timeout, futures_util::future::join_all(workers.iter_mut())).await;
        if drained.is_err() {
            for worker in &workers {
                worker.abort();
            }
            for state in &self.inner.channels {
                let unsent = state.pending.swap(0, Ordering::Relaxed);
                if unsent > 0 {
                    state.dropped.fetch_add(unsent as u64, Ordering::Relaxed);
                    metrics::counter!(metric::DROPPED, "channel" => state.name()).increment(unsent as u64);
                    warn!(
                        channel = state.name(),
                        unsent, "Notifications still unsent at shutdown were dropped."
                    );
                }
            }
        }
    }
}

/// One channel's sending loop: one message at a time, in order, until the
/// queue is closed and empty.
async fn run_worker(state: Arc<ChannelState>, mut rx: mpsc::Receiver<Arc<Notification>>, delivery: Delivery) {
    while let Some(notification) = rx.recv().await {
        deliver(&state, &notification, &delivery).await;
        state.finish_one();
    }
}

/// Sends one message with a time limit per attempt, retrying transient
/// failures with exponential backoff, and records how it ended.
async fn deliver(state: &ChannelState, notification: &Notification, delivery: &Delivery) {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout(delivery.timeout, state.channel.send(notification)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(delivery.timeout)),
        };
        match result {
            Ok(()) => return emit_sent(state, notification, attempt),
            Err(error) if error.is_transient() && attempt <= delivery.retries => {
                let wait = error
                    .retry_after()
                    .unwrap_or_else(|| Backoff::new(delivery.backoff, MAX_BACKOFF).wait(attempt))
                    .min(MAX_BACKOFF);
                emit_retry(state, notification, attempt, &error, wait);
                tokio::time::sleep(wait).await;
            }
            Err(error) => return emit_failed(state, notification, attempt, &error),
        }
    }
}

// === Emitters: each logs and counts one occurrence, so logs and metrics agree ===

fn emit_sent(state: &ChannelState, notification: &Notification, attempts: u32) {
    state.sent.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric::SENT, "channel" => state.name()).increment(1);
    state.set_last(true, "last message sent".into());
    info!(channel = state.name(), image = %notification.image, attempts, "Notification sent.");
}

fn emit_retry(
    state: &ChannelState,
    notification: &Notification,
    attempt: u32,
    error: &SendError,
    wait: Duration,
) {
    metrics::counter!(metric::RETRIES, "channel" => state.name()).increment(1);
    debug!(
        channel = state.name(),
        image = %notification.image,
        attempt,
        error = %error,
        wait_ms = wait.as_millis() as u64,
        "Notification attempt failed; trying again."
    );
}

fn emit_failed(state: &ChannelState, notification: &Notification, attempts: u32, error: &SendError) {
    state.failed.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric::FAILURES, "channel" => state.name()).increment(1);
    state.set_last(
        false,
        format!("last message failed after {attempts} attempt(s): {error}"),
    );
    warn!(
        channel = state.name(),
        image = %notification.image,
        attempts,
        error = %error,
        "Notification could not be sent."
    );
}

fn emit_dropped(state: &ChannelState, notification: &Notification, reason: &str) {
    state.dropped.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric::DROPPED, "channel" => state.name()).increment(1);
    warn!(channel = state.name(), image = %notification.image, reason, "Notification dropped.");
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::notify::config::MAX_BACKOFF;
    use crate::notify::render::tests::{notification, target};
    use crate::notify::{error_text, keys, scrub, BoxFuture, Delivery, NotifyConfig};
    use crate::settings::Reader;

    fn read(pairs: &[(&'static str, &str)]) -> (NotifyConfig, Vec<crate::settings::ConfigProblem>) {
        let vars: HashMap<&'static str, String> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut reader = Reader::new(&vars);
        let config = NotifyConfig::from_reader(&mut reader);
        (config, reader.problems)
    }

    #[test]
    fn nothing_configured_is_fine() {
        let (config, problems) = read(&[]);
        assert!(problems.is_empty());
        assert!(config.is_empty());
        assert_eq!(config.delivery, Delivery::default());
        assert_eq!(config.delivery.timeout, Duration::from_secs(10));
        assert_eq!(config.delivery.retries, 3);
    }

    #[test]
    fn every_channel_at_once() {
        let (config, problems) = read(&[
            (
                keys::SLACK_WEBHOOK_URL,
                "https://hooks.slack.com/services/T0/B0/SECRET",
            ),
            (
                keys::TEAMS_WEBHOOK_URL,
                "https://prod.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=SECRET",
            ),
            (keys::SMTP_URL, "smtp://u:SECRET@mail.example.test:2525?tls=none"),
            (keys::EMAIL_FROM, "hoist@example.test"),
            (keys::EMAIL_TO, "ops@example.test"),
            (keys::NOTIFY_TIMEOUT, "3s"),
            (keys::NOTIFY_RETRIES, "5"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(config.slack.is_some() && config.teams.is_some());
        let email = config.email.as_ref().unwrap();
        assert_eq!((email.smtp.port, email.smtp.tls), (2525, email::SmtpTls::None));
        assert_eq!(config.delivery.timeout, Duration::from_secs(3));
        assert_eq!(config.delivery.retries, 5);
        // The whole configuration can be logged without showing a secret.
        assert!(!format!("{config:?}").contains("SECRET"));
    }

    #[test]
    fn bad_urls_are_problems_without_their_value() {
        let (config, problems) = read(&[
            (keys::SLACK_WEBHOOK_URL, "hooks.slack.com/services/SECRET"),
            (keys::TEAMS_WEBHOOK_URL, "ftp://example.test/SECRET"),
            (keys::NOTIFY_TIMEOUT, "0s"),
            (keys::NOTIFY_RETRIES, "99"),
        ]);
        assert!(config.slack.is_none() && config.teams.is_none());
        let found: Vec<_> = problems.iter().map(|p| (p.key, p.value.clone())).collect();
        assert_eq!(
            found,
            vec![
                (keys::SLACK_WEBHOOK_URL, None),
                (keys::TEAMS_WEBHOOK_URL, None),
                (keys::NOTIFY_TIMEOUT, Some("0".into())),
                (keys::NOTIFY_RETRIES, Some("99".into())),
            ]
        );
        let text = crate::settings::ConfigError(problems).to_string();
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn transient_or_permanent() {
        let status = |status| SendError::Status {
            status,
            retry_after: None,
            body: String::new(),
        };
        let smtp = |transient| SendError::Smtp {
            transient,
            detail: String::new(),
        };
        assert!(SendError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(SendError::Connect("refused".into()).is_transient());
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 301] {
            assert!(!status(code).is_transient(), "{code}");
        }
        assert!(smtp(true).is_transient());
        assert!(!smtp(false).is_transient());
        assert!(!SendError::Invalid("x".into()).is_transient());
    }

    #[test]
    fn error_texts() {
        let e = SendError::Status {
            status: 400,
            retry_after: None,
            body: "invalid_payload".into(),
        };
        assert_eq!(e.to_string(), "http status 400 Bad Request: invalid_payload");
        assert_eq!(
            SendError::Timeout(Duration::from_millis(300)).to_string(),
            "timed out after 300 ms"
        );
    }

    #[test]
    fn retry_waits_are_capped() {
        let waits = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
        assert!((1..=100).all(|attempt| waits.wait(attempt) <= MAX_BACKOFF));
    }

    #[test]
    fn error_text_shows_each_cause_once() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>, bool);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)?;
                match (&self.1, self.2) {
                    (Some(inner), true) => write!(f, ": {inner}"),
                    _ => Ok(()),
                }
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        // reqwest style: the cause is not in the Display.
        let e = Layer(
            "error sending request",
            Some(Box::new(Layer("refused", None, false))),
            false,
        );
        assert_eq!(error_text(&e), "error sending request: refused");
        // lettre style: the kind repeated, the cause included.
        let e = Layer(
            "Connection error",
            Some(Box::new(Layer(
                "Connection error",
                Some(Box::new(Layer("bad certificate", None, false))),
                true,
            ))),
            true,
        );
        assert_eq!(error_text(&e), "Connection error: bad certificate");
    }

    #[test]
    fn scrub_replaces_secrets() {
        assert_eq!(
            scrub("a hunter2 b hunter2".into(), &["hunter2", "", "/"]),
            "a *** b ***"
        );
    }

    /// Fails with the given errors in turn, then succeeds; counts attempts.
    struct Scripted {
        errors: Mutex<Vec<SendError>>,
        attempts: AtomicU32,
    }

    impl Scripted {
        fn new(mut errors: Vec<SendError>) -> Arc<Scripted> {
            errors.reverse();
            Arc::new(Scripted {
                errors: Mutex::new(errors),
                attempts: AtomicU32::new(0),
            })
        }
    }

    impl Channel for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn send<'a>(&'a self, _: &'a Notification) -> BoxFuture<'a, Result<(), SendError>> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let next = self.errors.lock().unwrap().pop();
            Box::pin(async move {
                match next {
                    Some(SendError::Timeout(_)) => std::future::pending().await,
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            })
        }
        fn check(&self) -> BoxFuture<'_, Result<String, SendError>> {
            Box::pin(async { Ok("fine".to_string()) })
        }
    }

    fn delivery() -> Delivery {
        Delivery {
            timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_secs(1),
            queue_capacity: 4,
        }
    }

    fn update() -> Notification {
        notification(vec![target("web", crate::deploy::Outcome::Updated)])
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff() {
        let channel = Scripted::new(vec![
            SendError::Connect("refused".into()),
            SendError::Timeout(Duration::ZERO),
            SendError::Status {
                status: 503,
                retry_after: Some(Duration::from_secs(7)),
                body: String::new(),
            },
        ]);
        let notifier = Notifier::with_channels(vec![channel.clone()], delivery());
        let start = tokio::time::Instant::now();
        notifier.notify(update());
        notifier.shutdown(Duration::from_secs(600)).await;
        assert_eq!(channel.attempts.load(Ordering::SeqCst), 4);
        // Up to 1 s backoff, 5 s timeout + up to 2 s backoff, then the
        // receiver's 7 s; Backoff's jitter keeps each wait above half its ceiling.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500 + 5000 + 1000 + 7000)
                && took <= Duration::from_secs(1 + 5 + 2 + 7),
            "{took:?}"
        );
        let status = &notifier.status()[0];
        assert_eq!(
            (status.sent, status.failed, status.dropped, status.queued),
            (1, 0, 0, 0)
        );
        assert!(status.ok);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_permanent_errors_are_not_retried() {
        let refused = || SendError::Connect("refused".into());
        let channel = Scripted::new(vec![refused(), refused(), refused(), refused()]);
        let notifier = Notifier::with_channels(vec![channel.clone()], delivery());
        notifier.notify(update());
        notifier.shutdown(Duration::from_secs(600)).await;
        assert_eq!(channel.attempts.load(Ordering::SeqCst), 4);
        let status = &notifier.status()[0];
        assert_eq!((status.sent, status.failed), (0, 1));
        assert!(!status.ok);
        assert_eq!(
            status.detail,
            "last message failed after 4 attempt(s): connection failed: refused"
        );

        let forbidden = SendError::Status {
            status: 403,
            retry_after: None,
            body: "action_prohibited".into(),
        };
        let channel = Scripted::new(vec![forbidden]);
        let notifier = Notifier::with_channels(vec![channel.clone()], delivery());
        notifier.notify(update());
        notifier.shutdown(Duration::from_secs(600)).await;
        assert_eq!(channel.attempts.load(Ordering::SeqCst), 1);
        assert_eq!(notifier.status()[0].failed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_shutdown_gives_up_after_its_timeout() {
        let hang = || SendError::Timeout(Duration::ZERO);
        let channel = Scripted::new(vec![hang(), hang(), hang(), hang(), hang(), hang(), hang()]);
        let notifier = Notifier::with_channels(
            vec![channel.clone()],
            Delivery {
                queue_capacity: 2,
                ..delivery()
            },
        );
        for _ in 0..5 {
            notifier.notify(update());
        }
        // Let the worker take the first message off the queue.
        tokio::task::yield_now().await;
        notifier.notify(update());
        let status = &notifier.status()[0];
        assert_eq!(status.queued, 3);
        assert_eq!(status.dropped, 3);
        notifier.shutdown(Duration::from_secs(1)).await;
        let status = &notifier.status()[0];
        assert_eq!(status.queued, 0);
        assert_eq!(status.dropped, 6);
        notifier.notify(update());
        assert_eq!(notifier.status()[0].dropped, 7);
    }

    #[tokio::test]
    async fn check_reports_and_remembers() {
        let notifier = Notifier::with_channels(vec![Scripted::new(vec![])], delivery());
        assert_eq!(notifier.status()[0].detail, "not checked yet");
        let checked = notifier.check().await;
        assert_eq!(checked[0].channel, "scripted");
        assert_eq!(checked[0].detail, "fine");
        assert_eq!(notifier.status(), checked);
    }

    #[test]
    fn emitters_count_in_the_metrics_recorder() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _guard = runtime.enter();
        let notifier = Notifier::with_channels(vec![Scripted::new(vec![])], delivery());
        let state = &notifier.inner.channels[0];
        let n = update();
        metrics::with_local_recorder(&recorder, || {
            emit_sent(state, &n, 1);
            emit_failed(state, &n, 2, &SendError::Connect("x".into()));
            emit_dropped(state, &n, "the queue is full");
            emit_retry(state, &n, 1, &SendError::Connect("x".into()), Duration::ZERO);
        });
        let text = handle.render();
        for name in [metric::SENT, metric::FAILURES, metric::DROPPED, metric::RETRIES] {
            assert!(
                text.contains(&format!("{name}{{channel=\"scripted\"}} 1")),
                "{name}\n{text}"
            );
        }
    }
}
