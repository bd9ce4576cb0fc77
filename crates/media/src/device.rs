//! The default microphone and speaker, through cpal (feature `sound-devices`).
//!
//! A sound card runs at its own rate, channel count and sample format, and calls back on a
//! realtime thread. This module keeps that thread's work tiny and never lets it wait:
//!
//! - The cpal callback only converts samples to mono `f32` at the device's rate and moves them
//!   through a bounded queue (a `Mutex<VecDeque>` that the callback only ever
//!   `try_lock`s; the other side holds it for a copy of a few hundred samples).
//! - Resampling between the device rate and 48 kHz (rubato's FFT resampler, as for WAV files)
//!   and framing into 20 ms [`Frame`]s happen on the caller's side, in
//!   [`MicrophoneSource::next_frame`] and [`SpeakerSink::write_frame`].
//! - `cpal::Stream` is not `Send` on every platform, so each stream lives on a dedicated thread
//!   that builds it, plays it and drops it when its [`MicrophoneSource`] or [`SpeakerSink`] is
//!   dropped (or finished). Both types are therefore `Send`, as [`AudioSource`] and
//!   [`AudioSink`] require.
//!
//! A machine without a usable device (no sound card, as on CI, or an ALSA error) gets
//! [`AudioError::NoDevice`] from [`open_microphone`] and [`open_speaker`], whose text points at
//! `--play`/`--record` with WAV files; the backend's own description goes to the log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig};
use rubato::{FftFixedIn, FftFixedOut, Resampler};

use crate::audio::{AudioSink, AudioSource, Frame, SILENT_FRAME, no_device};
use crate::error::AudioError;
use crate::{FRAME_SAMPLES, SAMPLE_RATE};

/// At most this much microphone audio waits to be sent; older audio is dropped. It bounds the
/// latency that builds up when the device clock runs faster than the call's 20 ms ticks.
const MICROPHONE_MAX_QUEUED: Duration = Duration::from_millis(200);

/// At most this much received audio waits to be played; older audio is dropped, so a burst
/// from the jitter buffer or a slow device never turns into lasting delay.
const SPEAKER_MAX_QUEUED: Duration = Duration::from_millis(200);

/// How long opening a device may take before it counts as missing.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// `no_device`'s names for the two directions.
const INPUT: &str = "input";
const OUTPUT: &str = "output";

/// Whether this machine has a default microphone and a default speaker that report a usable
/// format. A probe only: opening can still fail (a device busy in another program), so callers
/// must handle the error of [`open_microphone`] and [`open_speaker`] anyway.
pub fn devices_available() -> bool {
    // On a dedicated thread like the streams: a backend that panics leaves us with `false`.
    let probe = thread::Builder::new().name("peerline-audio-probe".into()).spawn(|| {
        quiet_alsa(|| {
            let Some(host) = default_host() else { return false };
            let input =
                host.default_input_device().is_some_and(|d| d.default_input_config().is_ok());
            let output =
                host.default_output_device().is_some_and(|d| d.default_output_config().is_ok());
            input && output
        })
    });
    probe.ok().and_then(|handle| handle.join().ok()).unwrap_or(false)
}

/// Opens the default microphone at its native rate and channel count; frames come out as
/// 48 kHz mono. Fails with [`AudioError::NoDevice`] when there is none.
pub fn open_microphone() -> Result<MicrophoneSource, AudioError> {
    let (stream, (queue, rate)) = StreamThread::spawn(INPUT, open_input_stream)?;
    let frames = ToFrames::new(rate).ok_or_else(|| unusable(INPUT, "sample rate", rate))?;
    Ok(MicrophoneSource { queue, frames, warned: false, _stream: stream })
}

/// Opens the default speaker at its native rate and channel count; frames go in as 48 kHz
/// mono and are played on every channel. Fails with [`AudioError::NoDevice`] when there is none.
pub fn open_speaker() -> Result<SpeakerSink, AudioError> {
    let (stream, (queue, rate)) = StreamThread::spawn(OUTPUT, open_output_stream)?;
    let samples = FromFrames::new(rate).ok_or_else(|| unusable(OUTPUT, "sample rate", rate))?;
    Ok(SpeakerSink { queue, samples, warned: false, stream })
}

/// Audio from the default microphone (see [`open_microphone`]).
///
/// [`next_frame`](AudioSource::next_frame) never returns `None` and never waits: when the
/// device has not delivered a whole frame yet it returns silence, so a call keeps its 20 ms
/// timeline.
pub struct MicrophoneSource {
    queue: Arc<SampleQueue>,
    frames: ToFrames,
    warned: bool,
    _stream: StreamThread,
}

impl AudioSource for MicrophoneSource {
    fn next_frame(&mut self) -> Option<Frame> {
        warn_once_if_failed(&self.queue, &mut self.warned, INPUT);
        Some(self.frames.next_frame(&self.queue))
    }
}

impl std::fmt::Debug for MicrophoneSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrophoneSource").field("rate", &self.frames.rate).finish_non_exhaustive()
    }
}

/// Audio to the default speaker (see [`open_speaker`]).
///
/// [`write_frame`](AudioSink::write_frame) never waits for the device; when more than about
/// 200 ms is queued the oldest audio is dropped. [`finish`](AudioSink::finish) stops the
/// stream and releases the device.
pub struct SpeakerSink {
    queue: Arc<SampleQueue>,
    samples: FromFrames,
    warned: bool,
    stream: StreamThread,
}

impl AudioSink for SpeakerSink {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), AudioError> {
        // A device that failed mid-call (unplugged) is logged, not fatal: the call goes on.
        warn_once_if_failed(&self.queue, &mut self.warned, OUTPUT);
        self.samples.push_frame(frame, &self.queue);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        self.stream.stop();
        Ok(())
    }
}

impl std::fmt::Debug for SpeakerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerSink").field("rate", &self.samples.rate).finish_non_exhaustive()
    }
}

fn warn_once_if_failed(queue: &SampleQueue, warned: &mut bool, direction: &'static str) {
    if !*warned && queue.failed.load(Ordering::Relaxed) {
        *warned = true;
        tracing::warn!(direction, "the sound device stopped working; the call goes on in silence");
    }
}

/// Mono `f32` samples at the device's rate between the cpal callback and the caller, at most
/// `capacity` of them (the oldest are dropped).
#[derive(Debug)]
struct SampleQueue {
    samples: Mutex<VecDeque<f32>>,
    capacity: usize,
    /// Set by the stream's error callback when the device failed (other than an xrun).
    failed: AtomicBool,
}

impl SampleQueue {
    fn new(rate: u32, max_queued: Duration) -> Self {
        let capacity = usize::try_from(u128::from(rate) * max_queued.as_millis() / 1000)
            .unwrap_or(usize::MAX)
            .max(FRAME_SAMPLES);
        SampleQueue {
            samples: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            failed: AtomicBool::new(false),
        }
    }

    /// Locks the queue from the caller's side; a poisoned lock is still a valid queue.
    fn lock(&self) -> MutexGuard<'_, VecDeque<f32>> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the queue from the realtime callback: `None` rather than waiting.
    fn try_lock(&self) -> Option<MutexGuard<'_, VecDeque<f32>>> {
        match self.samples.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Appends `samples`, dropping the oldest beyond the capacity. Never reallocates.
    fn push_locked(&self, queue: &mut VecDeque<f32>, samples: impl ExactSizeIterator<Item = f32>) {
        let incoming = samples.len();
        let skip = incoming.saturating_sub(self.capacity);
        let excess = (queue.len() + incoming - skip).saturating_sub(self.capacity);
        queue.drain(..excess.min(queue.len()));
        queue.extend(samples.skip(skip));
    }

    /// From the microphone callback: moves `pending` into the queue if the lock is free, and
    /// otherwise leaves it for the next callback.
    fn push_from_callback(&self, pending: &mut Vec<f32>) {
        if let Some(mut queue) = self.try_lock() {
            self.push_locked(&mut queue, pending.drain(..));
        }
    }
}

/// Turns mono samples at the device rate into 48 kHz frames (the microphone's side).
struct ToFrames {
    rate: u32,
    /// Samples taken from the queue and not yet resampled.
    pending: Vec<f32>,
    /// Most samples `pending` keeps; the oldest beyond are dropped (clock drift).
    max_pending: usize,
    /// `None` when the device already runs at 48 kHz.
    resampler: Option<FftFixedOut<f32>>,
    output: Vec<Vec<f32>>,
}

impl ToFrames {
    /// `None` if the rate cannot be resampled (zero).
    fn new(rate: u32) -> Option<Self> {
        let resampler = if rate == SAMPLE_RATE {
            None
        } else {
            let resampler =
                FftFixedOut::<f32>::new(rate as usize, SAMPLE_RATE as usize, FRAME_SAMPLES, 2, 1)
                    .ok()?;
            Some(resampler)
        };
        let output = vec![vec![0.0; FRAME_SAMPLES]];
        let max_pending = SampleQueue::new(rate, MICROPHONE_MAX_QUEUED).capacity;
        let pending = Vec::with_capacity(max_pending * 2);
        Some(ToFrames { rate, pending, max_pending, resampler, output })
    }

    /// The next 48 kHz frame, or silence when the device has not delivered enough yet.
    fn next_frame(&mut self, queue: &SampleQueue) -> Frame {
        {
            let mut queue = queue.lock();
            self.pending.extend(queue.drain(..));
        }
        let excess = self.pending.len().saturating_sub(self.max_pending);
        self.pending.drain(..excess);

        let mut frame = SILENT_FRAME;
        match self.resampler.as_mut() {
            None => {
                if let Some(samples) = self.pending.get(..FRAME_SAMPLES) {
                    for (out, &sample) in frame.iter_mut().zip(samples) {
                        *out = to_i16(sample);
                    }
                    self.pending.drain(..FRAME_SAMPLES);
                }
            }
            Some(resampler) => {
                let need = resampler.input_frames_next();
                let Some(input) = self.pending.get(..need) else { return frame };
                match resampler.process_into_buffer(&[input], &mut self.output, None) {
                    Ok((used, _)) => {
                        let resampled = self.output.first().map(Vec::as_slice).unwrap_or_default();
                        for (out, &sample) in frame.iter_mut().zip(resampled) {
                            *out = to_i16(sample);
                        }
                        self.pending.drain(..used.min(self.pending.len()));
                    }
                    Err(error) => {
                        tracing::debug!(%error, "resampling microphone audio failed");
                        self.pending.clear();
                    }
                }
            }
        }
        frame
    }
}

/// Turns 48 kHz frames into mono samples at the device rate (the speaker's side).
struct FromFrames {
    rate: u32,
    input: Vec<f32>,
    /// `None` when the device already runs at 48 kHz.
    resampler: Option<FftFixedIn<f32>>,
    output: Vec<Vec<f32>>,
}

impl FromFrames {
    /// `None` if the rate cannot be resampled (zero).
    fn new(rate: u32) -> Option<Self> {
        let (resampler, output) = if rate == SAMPLE_RATE {
            (None, Vec::new())
        } else {
            let resampler =
                FftFixedIn::<f32>::new(SAMPLE_RATE as usize, rate as usize, FRAME_SAMPLES, 2, 1)
                    .ok()?;
            let output = resampler.output_buffer_allocate(true);
            (Some(resampler), output)
        };
        Some(FromFrames { rate, input: vec![0.0; FRAME_SAMPLES], resampler, output })
    }

    /// Resamples `frame` and queues it for the device.
    fn push_frame(&mut self, frame: &Frame, queue: &SampleQueue) {
        for (out, &sample) in self.input.iter_mut().zip(frame) {
            *out = f32::from(sample) / 32768.0;
        }
        let samples = match self.resampler.as_mut() {
            None => self.input.as_slice(),
            Some(resampler) => {
                match resampler.process_into_buffer(&[&self.input], &mut self.output, None) {
                    Ok((_, written)) => self
                        .output
                        .first()
                        .and_then(|channel| channel.get(..written))
                        .unwrap_or_default(),
                    Err(error) => {
                        tracing::debug!(%error, "resampling speaker audio failed");
                        return;
                    }
                }
            }
        };
        let mut locked = queue.lock();
        queue.push_locked(&mut locked, samples.iter().copied());
    }
}

fn to_i16(sample: f32) -> i16 {
    (sample * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

/// The thread that owns a `cpal::Stream` (not `Send` everywhere) from build to drop.
struct StreamThread {
    /// Dropping it wakes the thread, which then drops the stream.
    stop: Option<mpsc::Sender<()>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl StreamThread {
    /// Runs `open` on a new thread and keeps the stream it builds playing until this handle
    /// is stopped or dropped. Any failure, a panic in the backend included, becomes
    /// [`AudioError::NoDevice`].
    fn spawn<T, F>(direction: &'static str, open: F) -> Result<(StreamThread, T), AudioError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<(cpal::Stream, T), AudioError> + Send + 'static,
    {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = thread::Builder::new()
            .name(format!("peerline-sound-{direction}"))
            .spawn(move || match quiet_alsa(open) {
                Ok((stream, opened)) => {
                    if ready_tx.send(Ok(opened)).is_ok() {
                        // Returns when the sender is dropped: the source or sink is done.
                        let _ = stop_rx.recv();
                    }
                    drop(stream);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(|error| unusable(direction, "audio thread", error))?;
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(opened)) => {
                Ok((StreamThread { stop: Some(stop_tx), handle: Some(handle) }, opened))
            }
            Ok(Err(error)) => {
                let _ = handle.join();
                Err(error)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                Err(unusable(direction, "audio backend", "it panicked while opening the device"))
            }
            // The thread drops the stream on its own once it sees `stop_tx` gone.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(unusable(direction, "device", "it did not open within 5 seconds"))
            }
        }
    }

    /// Stops and drops the stream, releasing the device.
    fn stop(&mut self) {
        self.stop.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Logs why a device cannot be used and returns the error that points at WAV files. Debug
/// level: the error itself says what to do; the backend's detail is for `PEERLINE_LOG=debug`.
fn unusable(direction: &'static str, what: &str, error: impl std::fmt::Display) -> AudioError {
    tracing::debug!(direction, %error, "the default sound {direction} {what} is unusable");
    no_device(direction)
}

/// Runs `f` with alsa-lib's error printing turned into a debug log. alsa-lib writes its errors
/// (no card, an unknown PCM, a failed config lookup) straight to stderr: eight lines of noise
/// before our own clear [`AudioError::NoDevice`] on a machine without a sound card. Its handler
/// is per thread (`snd_lib_error_set_local`), and every device is opened on a thread of its
/// own, so installing it here covers what cpal does on this thread, later calls included.
#[cfg(target_os = "linux")]
fn quiet_alsa<T>(f: impl FnOnce() -> T) -> T {
    let buffer = alsa::Output::local_error_handler().ok();
    let result = f();
    if let Some(buffer) = buffer {
        let text = buffer.borrow().to_string();
        if !text.trim().is_empty() {
            tracing::debug!(alsa = %text.trim(), "alsa-lib errors while opening sound devices");
        }
    }
    result
}

#[cfg(not(target_os = "linux"))]
fn quiet_alsa<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// cpal's default host; `None` where building it panics (cpal treats a broken ALSA
/// configuration as a bug).
fn default_host() -> Option<cpal::Host> {
    std::panic::catch_unwind(cpal::default_host).ok()
}

/// Picks `$build::<T>` for the device's sample format.
macro_rules! with_sample_type {
    ($format:expr, $build:ident, $direction:expr, ($($arg:expr),*)) => {
        match $format {
            SampleFormat::I8 => $build::<i8>($($arg),*),
            SampleFormat::I16 => $build::<i16>($($arg),*),
            SampleFormat::I24 => $build::<cpal::I24>($($arg),*),
            SampleFormat::I32 => $build::<i32>($($arg),*),
            SampleFormat::I64 => $build::<i64>($($arg),*),
            SampleFormat::U8 => $build::<u8>($($arg),*),
            SampleFormat::U16 => $build::<u16>($($arg),*),
            SampleFormat::U32 => $build::<u32>($($arg),*),
            SampleFormat::U64 => $build::<u64>($($arg),*),
            SampleFormat::F32 => $build::<f32>($($arg),*),
            SampleFormat::F64 => $build::<f64>($($arg),*),
            other => Err(unusable($direction, "sample format", format!("{other:?} is not supported"))),
        }
    };
}

/// On the stream thread: opens and plays the default input device.
fn open_input_stream() -> Result<(cpal::Stream, (Arc<SampleQueue>, u32)), AudioError> {
    let host = default_host().ok_or_else(|| unusable(INPUT, "host", "cpal found no host"))?;
    let device = host
        .default_input_device()
        .ok_or_else(|| unusable(INPUT, "device", "the host reports none"))?;
    let supported = device.default_input_config().map_err(|e| unusable(INPUT, "device", e))?;
    let config = supported.config();
    if config.sample_rate == 0 || config.channels == 0 {
        return Err(unusable(INPUT, "device", "it reports no channels or a zero sample rate"));
    }
    let queue = Arc::new(SampleQueue::new(config.sample_rate, MICROPHONE_MAX_QUEUED));
    let stream = with_sample_type!(
        supported.sample_format(),
        build_input,
        INPUT,
        (&device, config, Arc::clone(&queue))
    )?;
    stream.play().map_err(|e| unusable(INPUT, "stream", e))?;
    Ok((stream, (queue, config.sample_rate)))
}

/// On the stream thread: opens and plays the default output device.
fn open_output_stream() -> Result<(cpal::Stream, (Arc<SampleQueue>, u32)), AudioError> {
    let host = default_host().ok_or_else(|| unusable(OUTPUT, "host", "cpal found no host"))?;
    let device = host
        .default_output_device()
        .ok_or_else(|| unusable(OUTPUT, "device", "the host reports none"))?;
    let supported = device.default_output_config().map_err(|e| unusable(OUTPUT, "device", e))?;
    let config = supported.config();
    if config.sample_rate == 0 || config.channels == 0 {
        return Err(unusable(OUTPUT, "device", "it reports no channels or a zero sample rate"));
    }
    let queue = Arc::new(SampleQueue::new(config.sample_rate, SPEAKER_MAX_QUEUED));
    let stream = with_sample_type!(
        supported.sample_format(),
        build_output,
        OUTPUT,
        (&device, config, Arc::clone(&queue))
    )?;
    stream.play().map_err(|e| unusable(OUTPUT, "stream", e))?;
    Ok((stream, (queue, config.sample_rate)))
}

/// The error callback of both directions: an xrun is a glitch, anything else a failed device.
fn on_stream_error(queue: &SampleQueue, direction: &'static str, error: cpal::Error) {
    if error.kind() == cpal::ErrorKind::Xrun {
        tracing::trace!(direction, "sound device xrun");
    } else if !queue.failed.swap(true, Ordering::Relaxed) {
        tracing::debug!(direction, %error, "sound device stream error");
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: StreamConfig,
    queue: Arc<SampleQueue>,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels);
    let errors = Arc::clone(&queue);
    // Samples the callback could not hand over yet (the lock was busy); bounded like the queue.
    let mut pending: Vec<f32> = Vec::with_capacity(queue.capacity);
    let data = move |data: &[T], _: &cpal::InputCallbackInfo| {
        let incoming = data.len() / channels;
        let excess = (pending.len() + incoming).saturating_sub(queue.capacity);
        pending.drain(..excess.min(pending.len()));
        for frame in data.chunks_exact(channels) {
            let sum: f32 = frame.iter().map(|&s| f32::from_sample(s)).sum();
            pending.push(sum / channels as f32);
        }
        queue.push_from_callback(&mut pending);
    };
    let error = move |error| on_stream_error(&errors, INPUT, error);
    device
        .build_input_stream::<T, _, _>(config, data, error, Some(OPEN_TIMEOUT))
        .map_err(|e| unusable(INPUT, "stream", e))
}

fn build_output<T>(
    device: &cpal::Device,
    config: StreamConfig,
    queue: Arc<SampleQueue>,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels);
    let errors = Arc::clone(&queue);
    let data = move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
        let Some(mut samples) = queue.try_lock() else {
            // Busy for a moment: a period of silence rather than a wait.
            data.fill(T::EQUILIBRIUM);
            return;
        };
        for frame in data.chunks_mut(channels) {
            let sample = samples.pop_front().map_or(T::EQUILIBRIUM, T::from_sample);
            frame.fill(sample);
        }
    };
    let error = move |error| on_stream_error(&errors, OUTPUT, error);
    device
        .build_output_stream::<T, _, _>(config, data, error, Some(OPEN_TIMEOUT))
        .map_err(|e| unusable(OUTPUT, "stream", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::audio::ToneSource;
    use crate::tone::{ToneCriteria, analyze_tone};

    fn assert_points_at_wav_files(error: &AudioError) {
        assert!(matches!(error, AudioError::NoDevice { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("--play") && text.contains("--record"), "{text}");
    }

    #[test]
    fn without_a_sound_card_opening_a_device_fails_with_the_wav_options() {
        // On a machine with devices the streams must work instead; on CI there are none.
        match open_microphone() {
            Ok(mut microphone) => {
                for _ in 0..3 {
                    assert!(microphone.next_frame().is_some());
                }
            }
            Err(error) => assert_points_at_wav_files(&error),
        }
        match open_speaker() {
            Ok(mut speaker) => {
                speaker.write_frame(&SILENT_FRAME).unwrap();
                speaker.finish().unwrap();
            }
            Err(error) => assert_points_at_wav_files(&error),
        }
        if !devices_available() {
            assert!(open_microphone().is_err() || open_speaker().is_err());
        }
    }

    fn sine(rate: u32, freq: f64, len: usize) -> impl ExactSizeIterator<Item = f32> {
        (0..len).map(move |i| {
            (0.3 * (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin()) as f32
        })
    }

    #[test]
    fn the_queue_drops_the_oldest_samples_beyond_its_bound() {
        let queue = SampleQueue::new(48_000, Duration::from_millis(20));
        assert_eq!(queue.capacity, FRAME_SAMPLES);
        let mut locked = queue.lock();
        queue.push_locked(&mut locked, (0..700).map(|i| i as f32));
        queue.push_locked(&mut locked, (700..1000).map(|i| i as f32));
        assert_eq!(locked.len(), FRAME_SAMPLES);
        assert_eq!(locked.front(), Some(&40.0));
        assert_eq!(locked.back(), Some(&999.0));
        queue.push_locked(&mut locked, (0..5000).map(|i| i as f32));
        assert_eq!(locked.len(), FRAME_SAMPLES);
        assert_eq!(locked.front(), Some(&(5000.0 - FRAME_SAMPLES as f32)));
    }

    #[test]
    fn a_busy_queue_keeps_the_callbacks_samples_for_the_next_callback() {
        let queue = SampleQueue::new(48_000, MICROPHONE_MAX_QUEUED);
        let mut pending = vec![1.0; 10];
        {
            let _held = queue.lock();
            queue.push_from_callback(&mut pending);
        }
        assert_eq!(pending.len(), 10);
        queue.push_from_callback(&mut pending);
        assert!(pending.is_empty());
        assert_eq!(queue.lock().len(), 10);
    }

    #[test]
    fn microphone_audio_at_44_1_khz_becomes_48_khz_frames_and_silence_when_starved() {
        let queue = SampleQueue::new(44_100, MICROPHONE_MAX_QUEUED);
        let mut frames = ToFrames::new(44_100).unwrap();
        assert_eq!(frames.next_frame(&queue), SILENT_FRAME, "no data yet: silence");
        let mut tone = sine(44_100, 440.0, 44_100 * 2);
        let mut heard = Vec::new();
        for _ in 0..100 {
            // The device delivers about 20 ms per tick, in its own block size.
            let block: Vec<f32> = tone.by_ref().take(882).collect();
            queue.push_locked(&mut queue.lock(), block.into_iter());
            heard.extend_from_slice(&frames.next_frame(&queue));
        }
        let report = analyze_tone(&heard[9600..], SAMPLE_RATE, 440.0, &ToneCriteria::default());
        assert_eq!(report.tone_windows, report.windows.len(), "{report:?}");
    }

    #[test]
    fn speaker_frames_are_resampled_to_the_device_rate() {
        for rate in [44_100, 48_000, 16_000] {
            let queue = SampleQueue::new(rate, Duration::from_secs(2));
            let mut samples = FromFrames::new(rate).unwrap();
            let mut tone = ToneSource::new(440.0);
            for _ in 0..50 {
                samples.push_frame(&tone.next_frame().unwrap(), &queue);
            }
            let played: Vec<i16> = queue.lock().iter().map(|&s| to_i16(s)).collect();
            let expected = rate as usize; // one second
            assert!(
                played.len().abs_diff(expected) <= rate as usize / 10,
                "{rate}: {}",
                played.len()
            );
            let skip = rate as usize / 10;
            let report = analyze_tone(&played[skip..], rate, 440.0, &ToneCriteria::default());
            assert_eq!(report.tone_windows, report.windows.len(), "{rate}: {report:?}");
        }
    }
}
