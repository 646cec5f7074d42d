//! Task events from PostgreSQL NOTIFY, fanned out to the requests waiting on each task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::TASK_EVENTS_CHANNEL;

/// Subscriptions to task changes, shared by every request of one API process.
#[derive(Clone, Default)]
pub struct TaskEvents {
    waiters: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

/// Wakes when the task it names may have changed.
pub struct TaskSubscription {
    task_id: String,
    rx: watch::Receiver<u64>,
    events: TaskEvents,
}

/// Longest a waiter sleeps between reads, in case a notification was lost with a connection.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

impl TaskSubscription {
    /// Returns once a change was announced after the subscription (or after the last call).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits for a change, but not past `deadline` nor longer than a re-read interval:
    /// the caller reads the task again after it either way.
    pub async fn changed_before(&mut self, deadline: tokio::time::Instant) {
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(RECHECK_EVERY);
        let _ = tokio::time::timeout(wait, self.changed()).await;
    }
}

impl Drop for TaskSubscription {
    fn drop(&mut self) {
        let mut waiters = self.events.lock();
        if let Some(tx) = waiters.get(&self.task_id) {
            // Ours is the last receiver: nobody else waits on this task.
            if tx.receiver_count() <= 1 {
                waiters.remove(&self.task_id);
            }
        }
    }
}

impl TaskEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribe before reading the task's state, so no change between the two is missed.
    pub fn subscribe(&self, task_id: &str) -> TaskSubscription {
        let mut waiters = self.lock();
        let rx = waiters
            .entry(task_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        TaskSubscription {
            task_id: task_id.to_owned(),
            rx,
            events: self.clone(),
        }
    }

    fn wake(&self, task_id: &str) {
        if let Some(tx) = self.lock().get(task_id) {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// After a lost connection notifications may have been missed: everyone re-reads.
    fn wake_all(&self) {
        for tx in self.lock().values() {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// Listens until `shutdown`, reconnecting when the connection drops.
    pub fn spawn_listener(&self, pool: PgPool, shutdown: CancellationToken) {
        let events = self.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(err) = events.listen(&pool, &shutdown).await {
                    tracing::warn!(error = %err, "task event listener lost its connection");
                }
                events.wake_all();
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
    }

    async fn listen(&self, pool: &PgPool, shutdown: &CancellationToken) -> sqlx::Result<()> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(TASK_EVENTS_CHANNEL).await?;
        // Changes made while we were not listening.
        self.wake_all();
        loop {
            let notification = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                n = listener.try_recv() => n?,
            };
            match notification {
                Some(n) => self.wake(n.payload()),
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_every_subscriber_of_that_task_only() {
        let events = TaskEvents::default();
        let mut a = events.subscribe("task_a");
        let mut a2 = events.subscribe("task_a");
        let mut b = events.subscribe("task_b");
        events.wake("task_a");
        tokio::time::timeout(Duration::from_secs(1), a.changed())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), a2.changed())
            .await
            .unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(50), b.changed())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn entries_go_when_the_last_subscriber_does() {
        let events = TaskEvents::default();
        let a = events.subscribe("task_a");
        let a2 = events.subscribe("task_a");
        drop(a);
        assert_eq!(events.lock().len(), 1);
        drop(a2);
        assert!(events.lock().is_empty());
    }
}
