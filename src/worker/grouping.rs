//! Database steps that many concurrent jobs of one worker process take together.
//!
//! Whatever requests are waiting when the previous group is done form the next group, so
//! under load they share their statements and their commit, and alone one waits for nothing.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// Requests one statement takes together, at most.
pub const MAX_GROUP: usize = 64;

/// What a member of a group gets back: its result, `None` when it must take the step alone,
/// or why the database refused it.
type Reply<O> = oneshot::Sender<Result<Option<O>, String>>;

/// Runs one step for groups of requests; cheap to clone, stops once every clone is dropped.
pub struct Grouper<I, O> {
    queue: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Grouper<I, O> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

/// Why a request got no answer from its group.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The step failed for a request that was alone in its group.
    #[error("database: {0}")]
    Database(String),
    #[error("the grouped step stopped")]
    Stopped,
}

impl<I: Send + 'static, O: Send + 'static> Grouper<I, O> {
    /// Starts the step's task; `name` labels its group sizes. `step` answers a whole group, one output per request in
    /// order, or `None` when the group must be taken one by one. A group of several that
    /// fails is also taken one by one, so that a request the database refuses holds up no
    /// other.
    pub fn spawn<F, Fut>(name: &'static str, step: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = sqlx::Result<Option<Vec<O>>>> + Send,
    {
        let (queue, mut ready) = mpsc::channel::<(I, Reply<O>)>(4 * MAX_GROUP);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while ready.recv_many(&mut group, MAX_GROUP).await > 0 {
                let (requests, replies): (Vec<I>, Vec<Reply<O>>) = group.drain(..).unzip();
                let alone = replies.len() == 1;
                metrics::histogram!(crate::service::metrics::GROUP_SIZE, "step" => name)
                    .record(replies.len() as f64);
                match step(requests).await {
                    Ok(Some(outputs)) if outputs.len() == replies.len() => {
                        for (reply, output) in replies.into_iter().zip(outputs) {
                            let _ = reply.send(Ok(Some(output)));
                        }
                    }
                    Err(e) if alone => {
                        for reply in replies {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                    Ok(_) | Err(_) => {
                        for reply in replies {
                            let _ = reply.send(Ok(None));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Takes the step with the next group; `None` when the caller must take it alone.
    pub async fn run(&self, request: I) -> Result<Option<O>, GroupError> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| GroupError::Stopped)?;
        result
            .await
            .map_err(|_| GroupError::Stopped)?
            .map_err(GroupError::Database)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Notify;

    use super::*;

    /// Doubles each request; refuses any group holding a negative one, and answers a group
    /// holding 100 with one output too few. The first group waits for `gate`.
    fn doubler(gate: Arc<Notify>) -> Grouper<i64, i64> {
        Grouper::spawn("doubler", move |group: Vec<i64>| {
            let gate = gate.clone();
            async move {
                if group == [0] {
                    gate.notified().await;
                }
                if group.iter().any(|n| *n < 0) {
                    return Err(sqlx::Error::PoolTimedOut);
                }
                let mut doubled: Vec<i64> = group.iter().map(|n| n * 2).collect();
                if group.contains(&100) {
                    doubled.pop();
                }
                Ok(Some(doubled))
            }
        })
    }

    /// Runs `requests` at once while the first group (request 0) holds the step, so that
    /// they all form the second group; returns their answers in order.
    async fn second_group(
        grouper: &Grouper<i64, i64>,
        gate: &Notify,
        requests: &[i64],
    ) -> Vec<Result<Option<i64>, GroupError>> {
        let first = tokio::spawn({
            let grouper = grouper.clone();
            async move { grouper.run(0).await }
        });
        tokio::task::yield_now().await;
        let waiting: Vec<_> = requests
            .iter()
            .map(|&n| {
                let grouper = grouper.clone();
                tokio::spawn(async move { grouper.run(n).await })
            })
            .collect();
        for _ in 0..requests.len() + 2 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), Some(0));
        let mut answers = Vec::new();
        for w in waiting {
            answers.push(w.await.unwrap());
        }
        answers
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_group_answers_each_member_in_order() {
        let gate = Arc::new(Notify::new());
        let grouper = doubler(gate.clone());
        let answers = second_group(&grouper, &gate, &[1, 2, 3]).await;
        let answers: Vec<Option<i64>> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, [Some(2), Some(4), Some(6)]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_group_is_taken_one_by_one_and_a_refused_single_fails() {
        let gate = Arc::new(Notify::new());
        let grouper = doubler(gate.clone());
        let answers = second_group(&grouper, &gate, &[1, -1, 3]).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(None))), "{answers:?}");
        // Alone, the good ones go through and the refused one says why.
        assert_eq!(grouper.run(1).await.unwrap(), Some(2));
        let refused = grouper.run(-1).await.unwrap_err();
        assert!(matches!(refused, GroupError::Database(_)), "{refused:?}");
        // A group answered with the wrong number of outputs is taken one by one too.
        let answers = second_group(&grouper, &gate, &[5, 100]).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(None))), "{answers:?}");
    }
}
