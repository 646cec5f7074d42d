//! The lease of a long job: held in the database while the job runs, so that its message
//! can be settled with the broker and no one else starts it until the lease lapses.

use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use super::pipeline::{Pipeline, StepError};
use crate::domain::TaskId;
use crate::store::tasks;

/// Renews a task's lease until dropped.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The lease of one run: taken at most once, then renewed until the run ends.
#[derive(Default)]
pub(super) struct LeaseSlot {
    /// Told once the lease is recorded, so the message can be settled.
    notify: Option<oneshot::Sender<()>>,
    keeper: Option<LeaseKeeper>,
}

impl LeaseSlot {
    pub(super) fn new(notify: Option<oneshot::Sender<()>>) -> Self {
        LeaseSlot {
            notify,
            keeper: None,
        }
    }

    /// The run is over: nothing is renewed any more.
    pub(super) fn release(&mut self) {
        drop(self.keeper.take());
    }
}

impl Pipeline {
    /// Takes the lease of a long job once, and keeps renewing it while the run lasts.
    pub(super) async fn take_lease(
        &self,
        task_id: &TaskId,
        slot: &Mutex<LeaseSlot>,
    ) -> Result<(), StepError> {
        if slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keeper
            .is_some()
        {
            return Ok(());
        }
        if !tasks::hold_lease(&self.pool, task_id, self.lease).await? {
            return Err(StepError::Transient("the task stopped running".into()));
        }
        let pool = self.pool.clone();
        let id = task_id.clone();
        let lease = self.lease;
        let keeper = LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match tasks::hold_lease(&pool, &id, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, "could not renew the lease; will retry"),
                }
            }
        }));
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.keeper = Some(keeper);
        if let Some(notify) = slot.notify.take() {
            let _ = notify.send(());
        }
        Ok(())
    }
}
