//! A session's recording: its output (and, when asked, its input and resizes) as an asciicast
//! v2 file, written by a thread of its own so that the pump never waits for the disk.
//!
//! The pump hands each chunk over a bounded channel ([`Recording::record`] never blocks); a
//! full channel (a disk slower than the output) drops the recording, never the output. The
//! writer turns bytes into JSON strings, carrying a UTF-8 sequence split across reads over to
//! the next chunk, and stops by itself at the size cap.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::Utc;

/// Bytes in flight between the pump and the writer: a disk (or a writer thread starved of
/// CPU) may fall this far behind before the recording is dropped. What one recording can
/// hold in memory.
const QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// Events in flight at most (PTY reads are often small, so bytes are the real bound).
const CHANNEL_FRAMES: usize = 8192;

/// The `TERM` sessions run with, for the file's header.
const TERM: &str = "xterm-256color";

/// What a recording is asked to be.
#[derive(Debug, Clone)]
pub(crate) struct RecordingSpec {
    /// The asciicast file.
    pub path: PathBuf,
    /// Record input (`"i"` events) too.
    pub input: bool,
    /// The file's size cap, in bytes.
    pub max_bytes: u64,
    /// Go on with a file an earlier daemon wrote (appending, times continuing from its
    /// `started_ms`) instead of creating a new one.
    pub resume_from: Option<i64>,
}

/// A recording as the rest of the daemon sees it (`get_session`, the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingState {
    /// The file.
    pub path: PathBuf,
    /// Input recorded too.
    pub input: bool,
    /// When it started, Unix milliseconds: time 0 of the file.
    pub started_ms: i64,
    /// Bytes in the file.
    pub bytes: u64,
}

/// What happened to one [`Recording::record`].
pub(super) enum Recorded {
    /// Queued for the writer (or nothing to record).
    Queued,
    /// The writer is behind by the whole channel: the recording must be dropped.
    Overflowed,
}

/// The kind of an asciicast event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Output,
    Input,
    Resize,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Output => "o",
            Kind::Input => "i",
            Kind::Resize => "r",
        }
    }
}

/// One event on its way to the writer.
struct Frame {
    /// Seconds since the recording started.
    time: f64,
    kind: Kind,
    data: Vec<u8>,
}

/// A recording in progress, held by its session.
pub(super) struct Recording {
    path: PathBuf,
    input: bool,
    started_ms: i64,
    /// Written by the writer after every line.
    bytes: Arc<AtomicU64>,
    /// Bytes handed to the writer and not yet written.
    queued: Arc<AtomicUsize>,
    /// Time `anchor_secs` of the file is the instant `anchor`.
    anchor: Instant,
    anchor_secs: f64,
    /// `None` once closed: nothing more is recorded.
    frames: Option<SyncSender<Frame>>,
    writer: Option<JoinHandle<()>>,
    /// Tells a stop the writer reports apart from a later recording's.
    pub(super) generation: u64,
}

impl Recording {
    /// Opens (creates, or for a resume appends to) the file and starts its writer for a
    /// `size` terminal. `on_stop` is called by the writer, once, if it stops by itself (the
    /// size cap, a write error), with the reason.
    pub fn start(
        spec: RecordingSpec,
        size: (u16, u16),
        generation: u64,
        on_stop: Box<dyn FnOnce(String) + Send>,
    ) -> io::Result<Self> {
        let now_ms = Utc::now().timestamp_millis();
        let (file, started_ms, anchor_secs, written) = match spec.resume_from {
            None => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&spec.path)?;
                let header = header(size, now_ms);
                file.write_all(header.as_bytes())?;
                (file, now_ms, 0.0, header.len() as u64)
            }
            Some(started_ms) => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(&spec.path)?;
                cut_partial_line(&mut file)?;
                let last = last_time(&mut file)?;
                let since_start = (now_ms - started_ms).max(0) as f64 / 1000.0;
                let written = file.metadata()?.len();
                (file, started_ms, since_start.max(last), written)
            }
        };
        let opened = Opened {
            path: spec.path,
            input: spec.input,
            max_bytes: spec.max_bytes,
            started_ms,
            anchor_secs,
            written,
        };
        Self::spawn(opened, Box::new(file), generation, on_stop)
    }

    /// Starts the writer thread on `sink`, an opened file.
    fn spawn(
        opened: Opened,
        sink: Box<dyn Write + Send>,
        generation: u64,
        on_stop: Box<dyn FnOnce(String) + Send>,
    ) -> io::Result<Self> {
        let Opened {
            path,
            input,
            max_bytes,
            started_ms,
            anchor_secs,
            written,
        } = opened;
        let bytes = Arc::new(AtomicU64::new(written));
        let queued = Arc::new(AtomicUsize::new(0));
        let (frames, receiver) = sync_channel(CHANNEL_FRAMES);
        let writer = Writer {
            file: BufWriter::new(sink),
            bytes: Arc::clone(&bytes),
            queued: Arc::clone(&queued),
            max_bytes,
            last_time: anchor_secs,
            output: Utf8Carry::default(),
            input: Utf8Carry::default(),
            line: Vec::new(),
        };
        let writer = std::thread::Builder::new()
            .name("pulsar-recorder".to_owned())
            .spawn(move || writer.run(receiver, on_stop))?;
        Ok(Self {
            path,
            input,
            started_ms,
            bytes,
            queued,
            anchor: Instant::now(),
            anchor_secs,
            frames: Some(frames),
            writer: Some(writer),
            generation,
        })
    }

    /// How it stands now.
    pub fn state(&self) -> RecordingState {
        RecordingState {
            path: self.path.clone(),
            input: self.input,
            started_ms: self.started_ms,
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Output bytes, as the session's readers see them.
    pub fn output(&self, data: &[u8]) -> Recorded {
        self.send(Kind::Output, data.to_vec())
    }

    /// Input bytes, if input is recorded.
    pub fn input(&self, data: &[u8]) -> Recorded {
        if !self.input {
            return Recorded::Queued;
        }
        self.send(Kind::Input, data.to_vec())
    }

    /// The terminal is now `cols`×`rows`.
    pub fn resize(&self, (cols, rows): (u16, u16)) -> Recorded {
        self.send(Kind::Resize, format!("{cols}x{rows}").into_bytes())
    }

    fn send(&self, kind: Kind, data: Vec<u8>) -> Recorded {
        let Some(frames) = &self.frames else {
            return Recorded::Queued;
        };
        let len = data.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return Recorded::Overflowed;
        }
        let time = self.anchor_secs + self.anchor.elapsed().as_secs_f64();
        match frames.try_send(Frame { time, kind, data }) {
            Ok(()) => Recorded::Queued,
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                Recorded::Overflowed
            }
            // The writer stopped by itself and is telling the session.
            Err(TrySendError::Disconnected(_)) => Recorded::Queued,
        }
    }

    /// Stops recording: the writer writes what is queued and closes the file. Returns the
    /// writer, to wait for that; the state stays readable.
    pub fn close(&mut self) -> Option<JoinHandle<()>> {
        self.frames = None;
        self.writer.take()
    }
}

/// A recording's file, opened, and where it stands.
struct Opened {
    path: PathBuf,
    input: bool,
    max_bytes: u64,
    started_ms: i64,
    /// The file's time now, in seconds.
    anchor_secs: f64,
    /// Bytes in the file already.
    written: u64,
}

/// The writer thread's side.
struct Writer {
    file: BufWriter<Box<dyn Write + Send>>,
    bytes: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    max_bytes: u64,
    /// Times never go back, whatever the clocks do.
    last_time: f64,
    output: Utf8Carry,
    input: Utf8Carry,
    /// The line being written, its allocation reused.
    line: Vec<u8>,
}

impl Writer {
    fn run(mut self, frames: Receiver<Frame>, on_stop: Box<dyn FnOnce(String) + Send>) {
        let stopped = self.write_all(&frames);
        // Drop the receiver first: the pump then sees the writer gone, never a full channel.
        drop(frames);
        let flushed = self.file.flush();
        match (stopped, flushed) {
            (Some(reason), _) => on_stop(reason),
            (None, Err(err)) => on_stop(format!("writing the recording failed: {err}")),
            (None, Ok(())) => {}
        }
    }

    /// Writes frames until the channel closes (`None`) or the recording must stop (the
    /// reason).
    fn write_all(&mut self, frames: &Receiver<Frame>) -> Option<String> {
        loop {
            let frame = match frames.try_recv() {
                Ok(frame) => frame,
                Err(TryRecvError::Empty) => {
                    // Idle: what was written reaches the file before we sleep.
                    if let Err(err) = self.file.flush() {
                        return Some(format!("writing the recording failed: {err}"));
                    }
                    match frames.recv() {
                        Ok(frame) => frame,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            let text = match frame.kind {
                Kind::Output => self.output.push(&frame.data),
                Kind::Input => self.input.push(&frame.data),
                Kind::Resize => String::from_utf8_lossy(&frame.data),
            };
            let written = self.line(frame.time, frame.kind, &text);
            self.queued.fetch_sub(frame.data.len(), Ordering::Relaxed);
            if let Err(reason) = written {
                return Some(reason);
            }
        }
        // The end: an incomplete sequence left over is written as what it is, invalid.
        for (kind, rest) in [
            (Kind::Output, self.output.finish()),
            (Kind::Input, self.input.finish()),
        ] {
            if !rest.is_empty()
                && let Err(reason) = self.line(self.last_time, kind, &rest)
            {
                return Some(reason);
            }
        }
        None
    }

    fn line(&mut self, time: f64, kind: Kind, text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        self.last_time = self.last_time.max(time);
        let mut line = std::mem::take(&mut self.line);
        event_line_into(&mut line, self.last_time, kind, text);
        let written = self.write_line(&line);
        self.line = line;
        written
    }

    /// Writes one whole line, or stops the recording.
    fn write_line(&mut self, line: &[u8]) -> Result<(), String> {
        let written = self.bytes.load(Ordering::Relaxed);
        if written + line.len() as u64 > self.max_bytes {
            return Err(format!(
                "the recording reached its size cap (recording_max_bytes = {})",
                self.max_bytes
            ));
        }
        self.file
            .write_all(line)
            .map_err(|err| format!("writing the recording failed: {err}"))?;
        self.bytes
            .store(written + line.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// One event line.
fn event_line(time: f64, kind: Kind, text: &str) -> String {
    let mut line = Vec::new();
    event_line_into(&mut line, time, kind, text);
    String::from_utf8(line).expect("JSON is UTF-8")
}

/// One event line, into `line` (cleared first): the writer reuses one buffer.
fn event_line_into(line: &mut Vec<u8>, time: f64, kind: Kind, text: &str) {
    line.clear();
    let _ = write!(line, "[{time:.6}, \"{}\", ", kind.code());
    serde_json::to_writer(&mut *line, text).expect("a string serializes");
    line.extend_from_slice(b"]\n");
}

/// An asciicast v2 text of output `chunks`, each with when it arrived (Unix milliseconds),
/// for a `size` terminal: a recording made after the fact (`export_asciicast`). Times start
/// at the first chunk and never go back.
pub(crate) fn cast_of(size: (u16, u16), chunks: &[(i64, Vec<u8>)]) -> String {
    let start = chunks
        .first()
        .map_or_else(|| Utc::now().timestamp_millis(), |(ms, _)| *ms);
    let mut cast = header(size, start);
    let mut carry = Utf8Carry::default();
    let mut last = 0.0f64;
    for (ms, data) in chunks {
        last = last.max((ms - start).max(0) as f64 / 1000.0);
        let text = carry.push(data);
        if !text.is_empty() {
            cast.push_str(&event_line(last, Kind::Output, &text));
        }
    }
    let rest = carry.finish();
    if !rest.is_empty() {
        cast.push_str(&event_line(last, Kind::Output, &rest));
    }
    cast
}

/// The file's first line.
fn header((cols, rows): (u16, u16), now_ms: i64) -> String {
    let header = serde_json::json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": now_ms / 1000,
        "env": {"TERM": TERM},
    });
    format!("{header}\n")
}

/// How much of a file's end is read back when going on with it: more than the longest line
/// (a 16 KiB chunk, every byte escaped as `\u00XX`).
const TAIL: u64 = 128 * 1024;

/// Cuts a line the last writer did not finish (a daemon killed mid-write), so that the
/// events appended next are not glued to it.
fn cut_partial_line(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if tail.last().is_none_or(|b| *b == b'\n') {
        return Ok(());
    }
    if let Some(end) = tail.iter().rposition(|b| *b == b'\n') {
        file.set_len(start + end as u64 + 1)?;
    }
    Ok(())
}

/// The time of the last event in an asciicast file (0 for a header alone).
fn last_time(file: &mut File) -> io::Result<f64> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let time = String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find_map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()?
                .get(0)?
                .as_f64()
        })
        .unwrap_or(0.0);
    Ok(time)
}

/// Creates the recordings directory (0700) if it is missing.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Bytes to text across chunk boundaries: an incomplete UTF-8 sequence at a chunk's end waits
/// for the next chunk; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
struct Utf8Carry(Vec<u8>);

impl Utf8Carry {
    /// The text of `data` after what was carried, carrying its incomplete tail.
    fn push<'a>(&mut self, data: &'a [u8]) -> Cow<'a, str> {
        // The usual case, valid text and nothing carried: no copy.
        if self.0.is_empty()
            && incomplete_tail(data) == 0
            && let Ok(text) = std::str::from_utf8(data)
        {
            return Cow::Borrowed(text);
        }
        let mut bytes = std::mem::take(&mut self.0);
        bytes.extend_from_slice(data);
        let keep = incomplete_tail(&bytes);
        self.0 = bytes.split_off(bytes.len() - keep);
        Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whatever is still carried, as text.
    fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.0)).into_owned()
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 sequence that is not complete yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    // A sequence is at most 4 bytes: look back at most 3 for its lead byte.
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: the lead is further back
        }
        let needed = match byte {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        return if back < needed { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_chunks_is_carried_whole() {
        let mut carry = Utf8Carry::default();
        let euro = "€".as_bytes();
        assert_eq!(carry.push(&[b'a', euro[0]]), "a");
        assert_eq!(carry.push(&euro[1..2]), "");
        assert_eq!(carry.push(&[euro[2], b'b']), "€b");
        assert_eq!(carry.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut carry = Utf8Carry::default();
        assert_eq!(carry.push(b"x\xffy"), "x\u{fffd}y");
        assert_eq!(carry.push(b"\xe2\x82"), "");
        assert_eq!(carry.finish(), "\u{fffd}");
    }

    #[test]
    fn a_four_byte_character_in_every_split_comes_out_whole() {
        let crab = "🦀".as_bytes();
        for split in 1..crab.len() {
            let mut carry = Utf8Carry::default();
            let text = carry.push(&crab[..split]).into_owned() + &carry.push(&crab[split..]);
            assert_eq!(text, "🦀", "split at {split}");
        }
    }

    #[test]
    fn a_cast_made_after_the_fact_times_chunks_from_the_first() {
        let euro = "€".as_bytes();
        let chunks = vec![
            (10_000, vec![b'a', euro[0]]),
            (12_500, euro[1..].to_vec()),
            (11_000, b"b".to_vec()),
        ];
        let cast = cast_of((8, 2), &chunks);
        let lines: Vec<&str> = cast.lines().collect();
        assert!(lines[0].contains("\"width\":8") && lines[0].contains("\"timestamp\":10"));
        assert_eq!(
            &lines[1..],
            [
                "[0.000000, \"o\", \"a\"]",
                "[2.500000, \"o\", \"€\"]",
                "[2.500000, \"o\", \"b\"]"
            ]
        );
    }

    /// A file on a disk that does not answer until told to.
    struct StuckDisk(std::sync::mpsc::Receiver<()>);

    impl Write for StuckDisk {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_disk_that_does_not_keep_up_overflows_the_recording_instead_of_blocking() {
        let (unstick, stuck) = std::sync::mpsc::channel();
        let opened = Opened {
            path: PathBuf::from("/nowhere.cast"),
            input: false,
            max_bytes: u64::MAX,
            started_ms: 0,
            anchor_secs: 0.0,
            written: 0,
        };
        let mut recording =
            Recording::spawn(opened, Box::new(StuckDisk(stuck)), 1, Box::new(|_| {})).unwrap();
        let chunk = vec![b'x'; 16 * 1024];
        let started = Instant::now();
        let sent = (0..10 * QUEUE_BYTES / chunk.len())
            .position(|_| matches!(recording.output(&chunk), Recorded::Overflowed))
            .expect("the queue overflows");
        assert_eq!(
            sent,
            QUEUE_BYTES / chunk.len(),
            "overflows at the byte bound"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        drop(unstick);
        recording.close().unwrap().join().unwrap();
    }

    #[test]
    fn going_on_with_a_file_cut_mid_line_drops_the_unfinished_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.cast");
        std::fs::write(
            &path,
            "{\"version\":2}\n[0.5, \"o\", \"a\"]\n[0.7, \"o\", \"unfin",
        )
        .unwrap();
        let spec = RecordingSpec {
            path: path.clone(),
            input: false,
            max_bytes: u64::MAX,
            resume_from: Some(Utc::now().timestamp_millis()),
        };
        let mut recording = Recording::start(spec, (80, 24), 1, Box::new(|_| {})).unwrap();
        assert!(matches!(recording.output(b"b"), Recorded::Queued));
        recording.close().unwrap().join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "[0.5, \"o\", \"a\"]");
        assert!(
            lines[2].starts_with("[0.5") && lines[2].ends_with("\"o\", \"b\"]"),
            "{text}"
        );
    }

    #[test]
    fn the_last_time_of_a_file_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cast");
        std::fs::write(
            &path,
            "{\"version\":2}\n[0.5, \"o\", \"a\"]\n[1.25, \"r\", \"8x2\"]\n",
        )
        .unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(last_time(&mut file).unwrap(), 1.25);
    }
}
