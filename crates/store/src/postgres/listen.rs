//! Wake-ups across nodes: one connection LISTENs for the new-work notifications that writers
//! send after their commits, and forwards them to [`crate::Store::subscribe_new_work`].

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::error::pg_error;
use super::CHANNEL;
use crate::model::WorkSignal;

/// Keeps one connection LISTENing and forwards notifications; reconnects when it is lost.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    tx: broadcast::Sender<WorkSignal>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let connected = tokio::select! {
            c = config.connect(NoTls) => c,
            _ = stop.changed() => return,
        };
        match connected {
            Ok((client, mut conn)) => {
                let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                let sql = format!("LISTEN {CHANNEL}");
                let listen = client.batch_execute(&sql);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        r = &mut listen, if !listening => match r {
                            Ok(()) => {
                                listening = true;
                                backoff = Duration::from_millis(100);
                                // Whatever was notified while this connection was down is
                                // lost: every dispatcher looks at its queue once.
                                let _ = tx.send(WorkSignal::All);
                            }
                            Err(e) => {
                                tracing::warn!(error = %pg_error(&e), "cannot LISTEN for new work");
                                break;
                            }
                        },
                        m = messages.next() => match m {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                let _ = tx.send(WorkSignal::Destination(n.payload().to_string()));
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %pg_error(&e), "lost the LISTEN connection; reconnecting");
                                break;
                            }
                            None => {
                                tracing::warn!("the LISTEN connection closed; reconnecting");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %pg_error(&e), "cannot connect to LISTEN for new work; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
