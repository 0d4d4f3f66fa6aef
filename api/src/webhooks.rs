//! Outgoing webhooks from the durable outbox: every history entry, in order, POSTed as JSON to
//! each configured URL with an HMAC-SHA256 signature; retried with backoff until every URL
//! answers 2xx, and only then removed from the outbox. At least once, in order per instance
//! (the outbox keeps command order; one event is delivered before the next).

use crate::config::WebhookConfig;
use caseflow_engine::Engine;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait between two attempts at a failing event.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long one POST may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `sha256=` and the hex HMAC of the body with the webhook's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers the outbox forever. `idle` is how often an empty outbox is looked at again.
///
/// On a database several nodes share, one node at a time delivers: the one holding the
/// outbox's lease (`Engine::outbox_lease`), renewed as it goes. The others wait for the lease,
/// which they take over when its holder stops renewing it. Each delivery is acknowledged under
/// the lease, so a holder that stalled past it cannot remove what its successor now delivers;
/// what it had already POSTed may go out twice (at least once, as ever: `x-caseflow-delivery`
/// names each event).
pub async fn deliver(engine: Arc<Engine>, hooks: Vec<WebhookConfig>, idle: Duration) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut backoff = Duration::from_millis(200);
    loop {
        let e = engine.clone();
        let lease = match tokio::task::spawn_blocking(move || e.outbox_lease()).await {
            Ok(Ok(Some(lease))) => Arc::new(lease),
            Ok(Ok(None)) => {
                // Another node delivers; look again once its lease could have ended.
                tokio::time::sleep(idle.max(engine.claim_lease() / 3)).await;
                continue;
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "taking the webhook delivery lease failed; trying again");
                tokio::time::sleep(idle.max(Duration::from_secs(1))).await;
                continue;
            }
            Err(_) => return,
        };
        tracing::debug!("this node delivers webhooks");
        deliver_under(&engine, &lease, &hooks, &client, idle, &mut backoff).await;
    }
}

/// Delivers while the lease holds; returns once it is lost.
async fn deliver_under(
    engine: &Arc<Engine>,
    lease: &Arc<caseflow_engine::service::OutboxLease>,
    hooks: &[WebhookConfig],
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    idle: Duration,
    backoff: &mut Duration,
) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        // The heartbeat, a third of the lease apart.
        if renewed.elapsed() >= engine.claim_lease() / 3 {
            let (e, l) = (engine.clone(), lease.clone());
            match tokio::task::spawn_blocking(move || e.renew_outbox_lease(&l)).await {
                Ok(Ok(true)) => renewed = tokio::time::Instant::now(),
                Ok(Ok(false)) => {
                    tracing::info!("another node took over webhook delivery");
                    return;
                }
                // Not renewed now: tried again on the next round, and the acknowledgement
                // below is refused if the lease was lost meanwhile.
                Ok(Err(err)) => tracing::warn!(error = %err, "renewing the webhook delivery lease failed"),
                Err(_) => return,
            }
        }
        let e = engine.clone();
        let batch =
            tokio::task::spawn_blocking(move || e.outbox_peek(100)).await.ok().and_then(Result::ok).unwrap_or_default();
        if batch.is_empty() {
            tokio::time::sleep(idle).await;
            continue;
        }
        for (key, event) in batch {
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let mut delivered = true;
            for hook in
                hooks.iter().filter(|h| h.events.is_empty() || h.events.iter().any(|name| event.event == name.as_str()))
            {
                let req = hyper::Request::post(&hook.url)
                    .header("content-type", "application/json")
                    .header("x-caseflow-event", event.event.as_str())
                    .header("x-caseflow-delivery", format!("{}-{}", event.instance, event.seq))
                    .header("x-caseflow-signature", signature(&hook.secret, &body))
                    .body(Full::new(Bytes::from(body.clone())));
                let Ok(req) = req else {
                    tracing::error!(url = %hook.url, "webhook URL is not valid; skipping it");
                    continue;
                };
                match tokio::time::timeout(DELIVERY_TIMEOUT, client.request(req)).await {
                    Ok(Ok(resp)) if resp.status().is_success() => {}
                    Ok(Ok(resp)) => {
                        tracing::warn!(url = %hook.url, status = %resp.status(), "webhook refused; will retry");
                        delivered = false;
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(url = %hook.url, error = %err, "webhook unreachable; will retry");
                        delivered = false;
                    }
                    Err(_) => {
                        tracing::warn!(url = %hook.url, "webhook timed out; will retry");
                        delivered = false;
                    }
                }
            }
            if !delivered {
                // Keep the order: nothing after this event goes out before it does.
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(RETRY_BACKOFF_MAX);
                break;
            }
            *backoff = Duration::from_millis(200);
            let (e, l) = (engine.clone(), lease.clone());
            match tokio::task::spawn_blocking(move || e.outbox_ack(&key, &l)).await {
                Ok(Err(caseflow_engine::EngineError::Store(caseflow_engine::storage::StoreError::ClaimLost(_)))) => {
                    tracing::info!("another node took over webhook delivery");
                    return;
                }
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "could not mark a webhook delivered; it will be sent again")
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_the_hex_hmac() {
        // RFC 4231 test case 2.
        let sig = super::signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
