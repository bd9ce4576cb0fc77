//! Where call audio comes from and goes to: 20 ms frames of 48 kHz mono 16-bit samples.
//!
//! WAV files are the testable path (CI machines have no sound card): [`WavSource`] reads any
//! common sample rate, mono or stereo, and resamples to 48 kHz with rubato; [`WavSink`] writes
//! 48 kHz mono 16-bit. [`ToneSource`] makes a sine tone for tests and bots. Sound devices come
//! later; until then a caller asking for one gets [`AudioError::NoDevice`], which names the
//! `--play/--record` options.

use std::f64::consts::TAU;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rubato::{FftFixedIn, Resampler};

use crate::error::AudioError;
use crate::{FRAME_SAMPLES, SAMPLE_RATE};

/// One 20 ms frame: 960 mono samples at 48 kHz.
pub type Frame = [i16; FRAME_SAMPLES];

/// A frame of silence.
pub const SILENT_FRAME: Frame = [0; FRAME_SAMPLES];

/// A producer of outgoing audio (a microphone, a file, a generator).
pub trait AudioSource: Send {
    /// The next 20 ms frame, or `None` when the source has ended.
    fn next_frame(&mut self) -> Option<Frame>;
}

/// A consumer of incoming audio (a speaker, a file, an analyzer).
pub trait AudioSink: Send {
    /// Takes the next 20 ms frame.
    fn write_frame(&mut self, frame: &Frame) -> Result<(), AudioError>;

    /// Flushes and closes the sink (for a file: writes the final header).
    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}

impl<S: AudioSource + ?Sized> AudioSource for Box<S> {
    fn next_frame(&mut self) -> Option<Frame> {
        (**self).next_frame()
    }
}

impl<S: AudioSink + ?Sized> AudioSink for Box<S> {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), AudioError> {
        (**self).write_frame(frame)
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        (**self).finish()
    }
}

/// Collects frames in memory; handy for tests and for the echo service's delay line.
impl AudioSink for Vec<i16> {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), AudioError> {
        self.extend_from_slice(frame);
        Ok(())
    }
}

/// The error a caller gets when it asks for a sound device: this build has no device support,
/// so it points the user at WAV files.
pub fn no_device(direction: &'static str) -> AudioError {
    AudioError::NoDevice { direction }
}

/// A sine tone that never ends.
#[derive(Debug, Clone)]
pub struct ToneSource {
    freq: f64,
    amplitude: f64,
    sample: u64,
}

impl ToneSource {
    /// A tone at `freq` Hz at 30 % of full scale (about -10 dBFS).
    pub fn new(freq: f64) -> Self {
        ToneSource { freq, amplitude: 0.3, sample: 0 }
    }

    /// The same tone at `amplitude` (0.0 to 1.0 of full scale).
    pub fn with_amplitude(mut self, amplitude: f64) -> Self {
        self.amplitude = amplitude.clamp(0.0, 1.0);
        self
    }
}

/// Writes `secs` seconds (rounded down to whole 20 ms frames) of a sine tone to a 48 kHz mono
/// WAV file: test input for calls without a sound card (`--play`). Whole seconds of the usual test
/// frequencies hold whole periods, so the file loops without a click.
pub fn write_tone_wav(
    path: impl AsRef<std::path::Path>,
    freq: f64,
    secs: f64,
) -> Result<(), AudioError> {
    let mut source = ToneSource::new(freq);
    let mut sink = WavSink::create(path)?;
    let frames = (secs.max(0.0) * 50.0) as u64;
    for _ in 0..frames {
        sink.write_frame(&source.next_frame().unwrap_or(SILENT_FRAME))?;
    }
    sink.finish()
}

impl AudioSource for ToneSource {
    fn next_frame(&mut self) -> Option<Frame> {
        let mut frame = SILENT_FRAME;
        let step = TAU * self.freq / f64::from(SAMPLE_RATE);
        for out in frame.iter_mut() {
            // Keep the phase argument small so the tone stays clean over long calls.
            let phase = (self.sample as f64 * step) % TAU;
            *out = to_i16(self.amplitude * phase.sin());
            self.sample = (self.sample + 1) % (u64::from(SAMPLE_RATE) * 1_000);
        }
        Some(frame)
    }
}

/// Audio from a WAV file (or from samples), converted to 48 kHz mono when opened.
#[derive(Debug, Clone)]
pub struct WavSource {
    samples: Vec<i16>,
    pos: usize,
    looping: bool,
}

impl WavSource {
    /// Opens a WAV file: 8, 16, 24 or 32-bit integer or 32-bit float PCM, any channel count
    /// (mixed down to mono) and any sample rate (resampled to 48 kHz). With `looping` the file
    /// repeats forever; otherwise the source ends after it (the last frame padded with silence).
    pub fn open(path: impl AsRef<Path>, looping: bool) -> Result<Self, AudioError> {
        Ok(WavSource { samples: read_wav(path)?, pos: 0, looping })
    }

    /// A source playing `samples` (48 kHz mono).
    pub fn from_samples(samples: Vec<i16>, looping: bool) -> Self {
        WavSource { samples, pos: 0, looping }
    }

    /// The audio's length in samples at 48 kHz.
    pub fn len_samples(&self) -> usize {
        self.samples.len()
    }
}

impl AudioSource for WavSource {
    fn next_frame(&mut self) -> Option<Frame> {
        if self.samples.is_empty() {
            return None;
        }
        let mut frame = SILENT_FRAME;
        let mut filled = 0;
        while filled < FRAME_SAMPLES {
            if self.pos >= self.samples.len() {
                if !self.looping {
                    break;
                }
                self.pos = 0;
            }
            let take = (FRAME_SAMPLES - filled).min(self.samples.len() - self.pos);
            let (Some(out), Some(input)) =
                (frame.get_mut(filled..filled + take), self.samples.get(self.pos..self.pos + take))
            else {
                break;
            };
            out.copy_from_slice(input);
            filled += take;
            self.pos += take;
        }
        (filled > 0).then_some(frame)
    }
}

/// The header and data of a recording reach the file at least this often (in frames: one
/// second), so that a recorder killed mid-call (`kill -9`, a crash, a power cut) leaves a WAV
/// file that opens and holds what was heard up to the last second.
const WAV_CHECKPOINT_FRAMES: u32 = 50;

/// Writes 48 kHz mono 16-bit WAV.
///
/// The file is created at once (so a path that cannot be written fails before a call starts),
/// its header is brought up to date every second ([`WAV_CHECKPOINT_FRAMES`]), and a file that
/// never got a frame — a call that did not connect — is removed at [`AudioSink::finish`] or
/// drop rather than left behind as an empty 44-byte recording.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    /// Frames written in all.
    frames: u64,
    /// Frames written since the header was last brought up to date.
    unflushed: u32,
}

impl WavSink {
    /// Creates (or truncates) the file.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, AudioError> {
        let path = path.as_ref().to_path_buf();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&path, spec)
            .map_err(|source| AudioError::Wav { path: path.clone(), source })?;
        Ok(WavSink { path, writer: Some(writer), frames: 0, unflushed: 0 })
    }

    fn wav_error(&self, source: hound::Error) -> AudioError {
        AudioError::Wav { path: self.path.clone(), source }
    }

    /// Removes the file when nothing was recorded; returns whether it did.
    fn remove_if_empty(&mut self) -> bool {
        if self.frames > 0 {
            return false;
        }
        // Dropped first, so that its finalizing write cannot recreate the file.
        drop(self.writer.take());
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "empty recording not removed");
        }
        true
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        // `finish` was not called (an error path): hound finalizes a non-empty file itself.
        self.remove_if_empty();
    }
}

impl AudioSink for WavSink {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        let mut result = Ok(());
        for &sample in frame {
            if let Err(e) = writer.write_sample(sample) {
                result = Err(e);
                break;
            }
        }
        self.frames += 1;
        self.unflushed += 1;
        if result.is_ok() && self.unflushed >= WAV_CHECKPOINT_FRAMES {
            self.unflushed = 0;
            result = writer.flush();
        }
        result.map_err(|e| self.wav_error(e))
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        if self.remove_if_empty() {
            return Ok(());
        }
        match self.writer.take() {
            Some(writer) => writer.finalize().map_err(|e| self.wav_error(e)),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Reads a whole WAV file as 48 kHz mono samples (see [`WavSource::open`] for what it reads).
pub fn read_wav(path: impl AsRef<Path>) -> Result<Vec<i16>, AudioError> {
    let path = path.as_ref();
    let wav_error = |source| AudioError::Wav { path: path.to_path_buf(), source };
    let unsupported =
        |reason: String| AudioError::UnsupportedWav { path: path.to_path_buf(), reason };
    let mut reader = hound::WavReader::open(path).map_err(wav_error)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(unsupported("it declares no channels or a zero sample rate".into()));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            reader.samples::<f32>().collect::<Result<_, _>>().map_err(wav_error)?
        }
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(wav_error)?
        }
        (format, bits) => {
            return Err(unsupported(format!(
                "{bits}-bit {format:?} samples; use 16-bit PCM or 32-bit float"
            )));
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect();
    let resampled = resample_to_48k(mono, spec.sample_rate)?;
    Ok(resampled.into_iter().map(|s| to_i16(f64::from(s))).collect())
}

/// Resamples mono audio from `from_rate` to 48 kHz (rubato's FFT resampler), compensating the
/// resampler's delay so the output lines up with the input.
fn resample_to_48k(input: Vec<f32>, from_rate: u32) -> Result<Vec<f32>, AudioError> {
    if from_rate == SAMPLE_RATE || input.is_empty() {
        return Ok(input);
    }
    let error =
        |e: &dyn std::fmt::Display| AudioError::Resample { from_rate, message: e.to_string() };
    let mut resampler =
        FftFixedIn::<f32>::new(from_rate as usize, SAMPLE_RATE as usize, 1024, 2, 1)
            .map_err(|e| error(&e))?;
    let delay = resampler.output_delay();
    let expected =
        usize::try_from(input.len() as u64 * u64::from(SAMPLE_RATE) / u64::from(from_rate))
            .unwrap_or(usize::MAX);
    let mut output = Vec::with_capacity(expected + delay + 4096);
    let mut pos = 0;
    loop {
        let need = resampler.input_frames_next();
        let Some(chunk) = input.get(pos..pos + need) else { break };
        let out = resampler.process(&[chunk], None).map_err(|e| error(&e))?;
        output.extend(out.into_iter().flatten());
        pos += need;
    }
    let rest = input.get(pos..).unwrap_or_default();
    let out = resampler.process_partial(Some(&[rest]), None).map_err(|e| error(&e))?;
    output.extend(out.into_iter().flatten());
    while output.len() < expected + delay {
        let out = resampler.process_partial::<&[f32]>(None, None).map_err(|e| error(&e))?;
        let before = output.len();
        output.extend(out.into_iter().flatten());
        if output.len() == before {
            break;
        }
    }
    output.drain(..delay.min(output.len()));
    output.truncate(expected);
    Ok(output)
}

fn to_i16(sample: f64) -> i16 {
    (sample * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::tone::{ToneCriteria, analyze_tone};

    fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f64, freq: f64) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let n = (f64::from(rate) * seconds) as u64;
        for i in 0..n {
            let v = (TAU * freq * i as f64 / f64::from(rate)).sin() * 0.5;
            for _ in 0..channels {
                w.write_sample(to_i16(v)).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn wav_at_other_rates_and_stereo_is_resampled_to_48k_mono() {
        let dir = tempfile::tempdir().unwrap();
        for (rate, channels) in [(8_000, 1), (16_000, 2), (44_100, 2), (48_000, 1)] {
            let path = dir.path().join(format!("tone-{rate}-{channels}.wav"));
            write_wav(&path, rate, channels, 1.0, 440.0);
            let samples = read_wav(&path).unwrap();
            assert!(
                (samples.len() as i64 - 48_000).abs() <= 1,
                "{rate} Hz: {} samples",
                samples.len()
            );
            let report = analyze_tone(&samples, SAMPLE_RATE, 440.0, &ToneCriteria::default());
            assert_eq!(
                report.tone_windows,
                report.windows.len(),
                "{rate} Hz x{channels}: {report:?}"
            );
        }
    }

    #[test]
    fn wav_source_pads_the_last_frame_and_ends_or_loops() {
        let mut once = WavSource::from_samples(vec![7; FRAME_SAMPLES + 10], false);
        assert_eq!(once.next_frame().unwrap(), [7; FRAME_SAMPLES]);
        let last = once.next_frame().unwrap();
        assert_eq!(&last[..10], &[7; 10]);
        assert_eq!(last[10], 0);
        assert!(once.next_frame().is_none());

        let mut looped = WavSource::from_samples(vec![1; 100], true);
        for _ in 0..5 {
            assert_eq!(looped.next_frame().unwrap(), [1; FRAME_SAMPLES]);
        }
    }

    #[test]
    fn wav_sink_round_trips_through_read_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut sink = WavSink::create(&path).unwrap();
        let mut tone = ToneSource::new(660.0);
        for _ in 0..50 {
            sink.write_frame(&tone.next_frame().unwrap()).unwrap();
        }
        sink.finish().unwrap();
        let samples = read_wav(&path).unwrap();
        assert_eq!(samples.len(), 50 * FRAME_SAMPLES);
        let report = analyze_tone(&samples, SAMPLE_RATE, 660.0, &ToneCriteria::default());
        assert_eq!(report.tone_windows, 10);
    }

    #[test]
    fn a_recording_that_is_never_finished_holds_every_whole_second_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.wav");
        let mut sink = WavSink::create(&path).unwrap();
        let mut tone = ToneSource::new(660.0);
        for _ in 0..130 {
            sink.write_frame(&tone.next_frame().unwrap()).unwrap();
        }
        // What a killed process leaves: the file as it is now, without finalize or drop.
        let copy = dir.path().join("copy.wav");
        std::fs::copy(&path, &copy).unwrap();
        std::mem::forget(sink);
        let samples = read_wav(&copy).unwrap();
        assert_eq!(samples.len(), 100 * FRAME_SAMPLES, "two whole seconds");
    }

    #[test]
    fn a_recording_that_got_no_audio_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let (finished, dropped) = (dir.path().join("finished.wav"), dir.path().join("dropped.wav"));
        let mut sink = WavSink::create(&finished).unwrap();
        assert!(finished.exists(), "created at once, so a bad path fails early");
        sink.finish().unwrap();
        drop(WavSink::create(&dropped).unwrap());
        assert!(!finished.exists() && !dropped.exists());
    }

    #[test]
    fn a_missing_file_and_no_device_name_what_to_do() {
        let err = read_wav("/nonexistent/x.wav").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.wav"));
        let err = no_device("input");
        assert!(err.to_string().contains("--play"));
        assert!(err.to_string().contains("--record"));
    }
}
