//! `$/progress` for an apply that runs the model: begin, a report per
//! batch of decoding steps (tokens done, tok/s, percentage of the expected
//! output), and end once the engine has stopped ("done" or "cancelled").
//! The token is the client's `workDoneToken` when it sent one, else one the
//! server creates with `window/workDoneProgress/create`.

use graft_engine::apply::ApplyProgress;
use lsp_types::notification::Progress;
use lsp_types::request::WorkDoneProgressCreate;
use lsp_types::{
    NumberOrString, ProgressParams, ProgressParamsValue, WorkDoneProgress, WorkDoneProgressBegin,
    WorkDoneProgressCreateParams, WorkDoneProgressEnd, WorkDoneProgressReport,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tower_lsp::Client;

use super::worker::Sample;

/// The report's message and percentage for one progress sample.
pub fn describe(progress: &ApplyProgress) -> (String, Option<u32>) {
    let seconds = progress.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 { progress.output_tokens as f64 / seconds } else { 0.0 };
    let percentage = (progress.expected_tokens > 0)
        .then(|| (100 * progress.output_tokens / progress.expected_tokens).min(100) as u32);
    let message = format!("{}/{} tokens, {rate:.1} tok/s", progress.output_tokens, progress.expected_tokens);
    (message, percentage)
}

pub struct Reporter {
    client: Client,
    token: NumberOrString,
}

impl Reporter {
    /// A reporter on `token`, or on a token created on the client when it
    /// supports that; `None` when progress cannot be shown.
    pub async fn start(
        client: &Client,
        token: Option<NumberOrString>,
        can_create: bool,
        id: u64,
        title: &str,
    ) -> Option<Self> {
        let token = match token {
            Some(token) => token,
            None if can_create => {
                let token = NumberOrString::String(format!("graft/apply/{id}"));
                let params = WorkDoneProgressCreateParams { token: token.clone() };
                client.send_request::<WorkDoneProgressCreate>(params).await.ok()?;
                token
            }
            None => return None,
        };
        let reporter = Reporter { client: client.clone(), token };
        let begin = WorkDoneProgressBegin {
            title: title.to_string(),
            cancellable: Some(true),
            message: Some("starting".into()),
            percentage: Some(0),
        };
        reporter.send(WorkDoneProgress::Begin(begin)).await;
        Some(reporter)
    }

    pub fn token(&self) -> &NumberOrString {
        &self.token
    }

    async fn send(&self, progress: WorkDoneProgress) {
        let params = ProgressParams { token: self.token.clone(), value: ProgressParamsValue::WorkDone(progress) };
        self.client.send_notification::<Progress>(params).await;
    }

    /// Reports steps (skipping those that queued up while one was being
    /// sent) until the engine stops, then ends the progress.
    pub async fn forward(self, mut samples: UnboundedReceiver<Sample>) {
        let mut message = "stopped";
        'samples: while let Some(mut sample) = samples.recv().await {
            while let Ok(newer) = samples.try_recv() {
                if let Sample::Step(_) = sample {
                    sample = newer;
                }
            }
            match sample {
                Sample::Step(step) => {
                    let (message, percentage) = describe(&step);
                    let report = WorkDoneProgressReport { cancellable: Some(true), message: Some(message), percentage };
                    self.send(WorkDoneProgress::Report(report)).await;
                }
                Sample::Stopped { cancelled } => {
                    message = if cancelled { "cancelled" } else { "done" };
                    break 'samples;
                }
            }
        }
        self.send(WorkDoneProgress::End(WorkDoneProgressEnd { message: Some(message.into()) })).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reports_say_tokens_rate_and_percentage() {
        let sample = ApplyProgress { output_tokens: 50, expected_tokens: 200, elapsed: Duration::from_millis(500) };
        assert_eq!(describe(&sample), ("50/200 tokens, 100.0 tok/s".to_string(), Some(25)));
        let over = ApplyProgress { output_tokens: 300, expected_tokens: 200, elapsed: Duration::ZERO };
        assert_eq!(describe(&over), ("300/200 tokens, 0.0 tok/s".to_string(), Some(100)));
        let unknown = ApplyProgress { output_tokens: 3, expected_tokens: 0, elapsed: Duration::from_secs(1) };
        assert_eq!(describe(&unknown).1, None);
    }
}
