//! A job's output on its way to the server: read line by line, secrets masked, sent in batches.
//!
//! Every producer (the two pipes of each process, and the runner's own `system` lines) writes
//! into one bounded channel through a [`LogSink`]; one [`ship`] task per job drains it into
//! batches. A full channel makes the readers wait, and so the job's processes block on their
//! pipes: output is slowed down, never dropped, while the server is slow or restarting.

use domain::run::protocol::{LogLine, Stream};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// A longer line is cut here, and the rest of it up to its newline dropped: a minified bundle or
/// a progress bar without newlines must not become one enormous log line.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Appended to a line that was cut.
pub const CUT_MARKER: &str = " … [line cut at 64 KiB]";
/// A batch is sent when it holds this many lines…
pub const MAX_BATCH_LINES: usize = 500;
/// …or this much text, whichever comes first: well under axum's default 2 MB body limit even
/// when JSON escaping grows the text.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Secrets shorter than this are not masked: masking `a` or `on` would make every log unreadable
/// and hide nothing worth hiding.
pub const MIN_SECRET_LEN: usize = 4;
/// What a secret value becomes in the log.
pub const MASK: &str = "***";
/// Lines waiting for the shipper before the producers have to wait.
const CHANNEL_LINES: usize = 4096;

/// Replaces every secret value in a line with [`MASK`].
#[derive(Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another one is masked whole.
    needles: Vec<String>,
}

impl Masker {
    /// Masks each value of at least [`MIN_SECRET_LEN`] characters. A value spanning several lines
    /// never appears whole in one log line, so each of its lines is masked as well.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for secret in secrets {
            needles.push(secret.to_string());
            if secret.contains('\n') {
                needles.extend(secret.lines().map(|l| l.trim_end_matches('\r').to_string()));
            }
        }
        needles.retain(|n| n.chars().count() >= MIN_SECRET_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Masker { needles }
    }

    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = Cow::Owned(text.replace(needle.as_str(), MASK));
            }
        }
        text
    }
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.needles.len())
            .finish()
    }
}

/// Where a job's lines go: masks them and queues them for the shipper. Cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<LogLine>,
    masker: Arc<Masker>,
}

/// A sink and the receiving end that [`ship`] drains.
pub fn channel(masker: Arc<Masker>) -> (LogSink, mpsc::Receiver<LogLine>) {
    let (tx, rx) = mpsc::channel(CHANNEL_LINES);
    (LogSink { tx, masker }, rx)
}

impl LogSink {
    pub async fn line(&self, stream: Stream, text: &str) {
        let text = self.masker.mask(text).into_owned();
        // The shipper only goes away when the job is over; lines after that have nowhere to go.
        let _ = self.tx.send(LogLine { stream, text }).await;
    }

    /// A line the runner writes itself: step headers, timings, why it stopped.
    pub async fn system(&self, text: impl AsRef<str>) {
        self.line(Stream::System, text.as_ref()).await;
    }

    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.masker.mask(text)
    }
}

/// Reads `reader` to its end and writes each line to `sink`: invalid UTF-8 replaced, a trailing
/// `\r` dropped, lines longer than [`MAX_LINE_BYTES`] cut with [`CUT_MARKER`]. A read error ends
/// the stream as if it were its end.
pub async fn read_lines<R: AsyncRead + Unpin>(reader: R, stream: Stream, sink: LogSink) {
    let mut reader = BufReader::with_capacity(MAX_LINE_BYTES, reader);
    let mut line: Vec<u8> = Vec::new();
    // True after a cut, until the newline that ends the dropped rest.
    let mut skipping = false;
    loop {
        let (used, newline, cut) = {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(error) => {
                    tracing::debug!(%error, "cannot read a process's output");
                    &[]
                }
            };
            if buf.is_empty() {
                break;
            }
            let (chunk, newline) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (&buf[..at], true),
                None => (buf, false),
            };
            let mut cut = false;
            if !skipping {
                let room = MAX_LINE_BYTES - line.len();
                if chunk.len() > room {
                    line.extend_from_slice(&chunk[..room]);
                    cut = true;
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            (chunk.len() + usize::from(newline), newline, cut)
        };
        reader.consume(used);
        if cut {
            sink.line(stream, &cut_line(&line)).await;
            line.clear();
            skipping = !newline;
        } else if newline {
            if !skipping {
                sink.line(stream, &whole_line(&line)).await;
            }
            line.clear();
            skipping = false;
        }
    }
    if !line.is_empty() && !skipping {
        sink.line(stream, &whole_line(&line)).await;
    }
}

fn whole_line(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes.strip_suffix(b"\r").unwrap_or(bytes))
}

/// The first [`MAX_LINE_BYTES`] of a line, without a character split in two at the cut.
fn cut_line(bytes: &[u8]) -> String {
    let bytes = match std::str::from_utf8(bytes) {
        Err(error) if error.error_len().is_none() => &bytes[..error.valid_up_to()],
        _ => bytes,
    };
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    text.push_str(CUT_MARKER);
    text
}

/// Why a batch was not delivered.
#[derive(Debug)]
pub enum SendFailure {
    /// The server answered 409: the job is no longer ours. Nothing more is sent.
    LeaseLost,
    /// Anything else, after the client's retries: this batch is dropped, later ones are tried.
    Other(String),
}

/// Drains `lines` into batches and hands each to `send`, one at a time and in order. A batch
/// goes out [`flush_every`](Duration) after its first line, or sooner when it reaches
/// [`MAX_BATCH_LINES`] or [`MAX_BATCH_BYTES`]. Returns when every sink is dropped and the last
/// batch is sent, with `true` if the server said the lease was lost (after which the remaining
/// lines are read and dropped, so producers never block on a dead job).
pub async fn ship<F, Fut>(
    mut lines: mpsc::Receiver<LogLine>,
    flush_every: Duration,
    mut send: F,
) -> bool
where
    F: FnMut(Vec<LogLine>) -> Fut,
    Fut: Future<Output = Result<(), SendFailure>>,
{
    let mut lease_lost = false;
    while let Some(first) = lines.recv().await {
        if lease_lost {
            continue;
        }
        let deadline = tokio::time::Instant::now() + flush_every;
        let mut bytes = first.text.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => {
                        bytes += line.text.len();
                        batch.push(line);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let count = batch.len();
        match send(batch).await {
            Ok(()) => {}
            Err(SendFailure::LeaseLost) => lease_lost = true,
            Err(SendFailure::Other(error)) => {
                tracing::warn!(%error, "dropped {count} log lines the server did not take");
            }
        }
    }
    lease_lost
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn collect() -> (LogSink, mpsc::Receiver<LogLine>) {
        channel(Arc::new(Masker::new(["hunter2-password", "abc"])))
    }

    async fn lines_of(input: &[u8]) -> Vec<String> {
        let (sink, mut rx) = collect();
        read_lines(input, Stream::Stdout, sink).await;
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(line.text);
        }
        out
    }

    #[test]
    fn secrets_of_four_or_more_characters_are_masked_everywhere_in_a_line() {
        let masker = Masker::new(["hunter2", "abc", "", "hunter2-long"]);
        assert_eq!(
            masker.mask("a hunter2 and hunter2-long, abc"),
            "a *** and ***, abc"
        );
        assert!(matches!(masker.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn each_line_of_a_multiline_secret_is_masked() {
        let masker = Masker::new(["-----BEGIN KEY-----\r\nAAAABBBB\r\n-----END KEY-----"]);
        assert_eq!(masker.mask("line AAAABBBB"), "line ***");
        assert_eq!(masker.mask("-----END KEY-----"), "***");
    }

    #[tokio::test]
    async fn lines_are_split_on_newlines_with_crlf_and_a_last_unterminated_line() {
        assert_eq!(
            lines_of(b"one\r\ntwo\n\nthree").await,
            ["one", "two", "", "three"]
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(lines_of(b"caf\xe9 ok\n").await, ["caf\u{fffd} ok"]);
    }

    #[tokio::test]
    async fn read_lines_masks_secrets() {
        assert_eq!(
            lines_of(b"password=hunter2-password abc\n").await,
            ["password=*** abc"]
        );
    }

    #[tokio::test]
    async fn a_very_long_line_is_cut_at_64_kib_with_a_marker_and_its_rest_dropped() {
        let mut input = vec![b'x'; MAX_LINE_BYTES * 3];
        input.extend_from_slice(b"\nnext\n");
        let lines = lines_of(&input).await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES + CUT_MARKER.len());
        assert!(lines[0].ends_with(CUT_MARKER));
        assert_eq!(lines[1], "next");
    }

    #[tokio::test]
    async fn a_cut_never_splits_a_character() {
        // 'é' is two bytes; with one leading 'x' the 64 KiB boundary falls inside one.
        let mut input = b"x".to_vec();
        input.extend("é".repeat(MAX_LINE_BYTES).as_bytes());
        let lines = lines_of(&input).await;
        assert_eq!(lines.len(), 1);
        let kept = lines[0].strip_suffix(CUT_MARKER).unwrap();
        assert_eq!(kept.len(), MAX_LINE_BYTES - 1);
        assert!(!kept.contains('\u{fffd}'));
    }

    #[tokio::test]
    async fn a_line_of_exactly_64_kib_is_kept_whole() {
        let mut input = vec![b'y'; MAX_LINE_BYTES];
        input.push(b'\n');
        let lines = lines_of(&input).await;
        assert_eq!(
            lines,
            [String::from_utf8(vec![b'y'; MAX_LINE_BYTES]).unwrap()]
        );
    }

    #[tokio::test]
    async fn many_lines_go_out_in_few_batches_in_order() {
        let (sink, rx) = collect();
        let batches = Arc::new(Mutex::new(Vec::<Vec<LogLine>>::new()));
        let seen = batches.clone();
        let shipper = tokio::spawn(ship(rx, Duration::from_millis(200), move |batch| {
            seen.lock().unwrap().push(batch);
            async { Ok(()) }
        }));
        for n in 0..1200 {
            sink.line(Stream::Stdout, &n.to_string()).await;
        }
        drop(sink);
        assert!(!shipper.await.unwrap());
        let batches = batches.lock().unwrap();
        assert!(batches.len() <= 4, "{} batches", batches.len());
        assert!(batches.iter().all(|b| b.len() <= MAX_BATCH_LINES));
        let all: Vec<String> = batches.iter().flatten().map(|l| l.text.clone()).collect();
        assert_eq!(all, (0..1200).map(|n| n.to_string()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_quiet_stream_is_flushed_after_the_interval() {
        let (sink, rx) = collect();
        let (sent_tx, mut sent) = mpsc::unbounded_channel();
        let shipper = tokio::spawn(ship(rx, Duration::from_millis(200), move |batch| {
            sent_tx.send(batch).unwrap();
            async { Ok(()) }
        }));
        sink.system("▶ build").await;
        let batch = sent.recv().await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].stream, Stream::System);
        drop(sink);
        shipper.await.unwrap();
    }

    #[tokio::test]
    async fn after_the_lease_is_lost_nothing_more_is_sent_and_producers_do_not_block() {
        let (sink, rx) = collect();
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let shipper = tokio::spawn(ship(rx, Duration::from_millis(1), move |_| {
            *counted.lock().unwrap() += 1;
            async { Err(SendFailure::LeaseLost) }
        }));
        sink.system("first").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for n in 0..(CHANNEL_LINES * 2) {
            sink.line(Stream::Stdout, &n.to_string()).await;
        }
        drop(sink);
        assert!(shipper.await.unwrap());
        assert_eq!(*calls.lock().unwrap(), 1);
    }
}
