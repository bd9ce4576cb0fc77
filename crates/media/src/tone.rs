//! Tone detection for tests and the echo service: was a given tone heard, where, and were there
//! silent gaps?
//!
//! [`goertzel_power`] measures one frequency (the Goertzel algorithm, a single DFT bin at an
//! arbitrary frequency). [`analyze_tone`] cuts a recording into windows (100 ms by default) and
//! reports, per window, whether the tone dominates it and whether it is silent, plus totals.
//! Within a window the tone's power is averaged over 20 ms blocks, so that a concealed packet
//! whose tone comes out of phase costs its own block only, as it would to a listener.

use std::f64::consts::TAU;
use std::time::Duration;

/// What counts as "the tone is there" and "silence".
#[derive(Debug, Clone, PartialEq)]
pub struct ToneCriteria {
    /// Length of one analysis window. Default 100 ms.
    pub window: Duration,
    /// Length of the blocks a window is measured in; their tone powers are averaged. Short
    /// blocks tolerate phase jumps (packet-loss concealment rarely keeps a tone's phase) but
    /// separate frequencies less sharply (a Hann-windowed 20 ms block resolves about 100 Hz).
    /// Default 20 ms.
    pub block: Duration,
    /// Share of a window's power that must be at the tone's frequency for the tone to
    /// dominate it (1.0 is a pure tone). Default 0.5.
    pub min_tone_share: f64,
    /// RMS level (fraction of full scale) below which a window is silent. Default 0.01
    /// (-40 dBFS).
    pub silence_rms: f64,
}

impl Default for ToneCriteria {
    fn default() -> Self {
        ToneCriteria {
            window: Duration::from_millis(100),
            block: Duration::from_millis(20),
            min_tone_share: 0.5,
            silence_rms: 0.01,
        }
    }
}

/// The analysis of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneWindow {
    /// Where the window starts in the recording.
    pub start: Duration,
    /// RMS level as a fraction of full scale.
    pub rms: f64,
    /// Share of the window's power at the tone's frequency (0.0 to about 1.0).
    pub tone_share: f64,
    /// Whether the window is silent.
    pub silent: bool,
    /// Whether the tone dominates the window.
    pub tone: bool,
}

/// The analysis of a recording for one tone.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneReport {
    /// Window length.
    pub window: Duration,
    /// Every full window of the recording, in order.
    pub windows: Vec<ToneWindow>,
    /// Windows in which the tone dominates.
    pub tone_windows: usize,
    /// Start of the first window with the tone.
    pub first_tone: Option<Duration>,
    /// End of the last window with the tone.
    pub last_tone: Option<Duration>,
    /// Total time of silent windows in the whole recording.
    pub silent_time: Duration,
    /// Longest run of windows without the tone between the first and the last window with it.
    pub longest_gap: Duration,
}

impl ToneReport {
    /// Share of windows with the tone from the first to the last window with it (0.0 when the
    /// tone never appears). Leading and trailing windows (before the call connected, after it
    /// ended) do not count.
    pub fn tone_fraction(&self) -> f64 {
        let first = self.windows.iter().position(|w| w.tone);
        let last = self.windows.iter().rposition(|w| w.tone);
        match (first, last) {
            (Some(first), Some(last)) => self.tone_windows as f64 / (last - first + 1) as f64,
            _ => 0.0,
        }
    }

    /// Silent time between the first and the last window with the tone.
    pub fn silent_time_during_tone(&self) -> Duration {
        let (Some(first), Some(last)) = (self.first_tone, self.last_tone) else {
            return Duration::ZERO;
        };
        let silent =
            self.windows.iter().filter(|w| w.silent && w.start >= first && w.start < last).count();
        self.window * u32::try_from(silent).unwrap_or(u32::MAX)
    }
}

/// The power of `samples` at `freq` Hz (Goertzel, with a Hann window), scaled so that a sine of
/// amplitude `a` gives about `a² / 2` — the same scale as the signal's mean square.
pub fn goertzel_power(samples: &[f64], sample_rate: u32, freq: f64) -> f64 {
    let n = samples.len();
    if n == 0 || sample_rate == 0 {
        return 0.0;
    }
    let coeff = 2.0 * (TAU * freq / f64::from(sample_rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut window_sum = 0.0;
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (TAU * i as f64 / n as f64).cos();
        window_sum += w;
        let s0 = x * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let magnitude_sq = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    if window_sum == 0.0 {
        return 0.0;
    }
    // |X| = a * sum(w) / 2 for a sine of amplitude a; its power is a² / 2.
    let amplitude = 2.0 * magnitude_sq.sqrt() / window_sum;
    amplitude * amplitude / 2.0
}

/// The tone's power averaged over blocks of `per_block` samples (Welch's method): each block is
/// measured on its own, so a phase jump between blocks does not cancel the tone.
fn block_power(samples: &[f64], per_block: usize, sample_rate: u32, freq: f64) -> f64 {
    let blocks: Vec<f64> = samples
        .chunks(per_block)
        .filter(|block| block.len() * 2 >= per_block)
        .map(|block| goertzel_power(block, sample_rate, freq))
        .collect();
    if blocks.is_empty() { 0.0 } else { blocks.iter().sum::<f64>() / blocks.len() as f64 }
}

/// Analyzes a 16-bit recording at `sample_rate` for a tone at `freq` Hz.
pub fn analyze_tone(
    samples: &[i16],
    sample_rate: u32,
    freq: f64,
    criteria: &ToneCriteria,
) -> ToneReport {
    let per_window =
        usize::try_from(u128::from(sample_rate) * criteria.window.as_micros() / 1_000_000)
            .unwrap_or(usize::MAX)
            .max(1);
    let per_block =
        usize::try_from(u128::from(sample_rate) * criteria.block.as_micros() / 1_000_000)
            .unwrap_or(usize::MAX)
            .clamp(1, per_window);
    let mut buf = Vec::with_capacity(per_window);
    let windows: Vec<ToneWindow> = samples
        .chunks_exact(per_window)
        .enumerate()
        .map(|(i, chunk)| {
            buf.clear();
            buf.extend(chunk.iter().map(|&s| f64::from(s) / 32768.0));
            let mean_square = buf.iter().map(|x| x * x).sum::<f64>() / buf.len() as f64;
            let rms = mean_square.sqrt();
            let tone_share = if mean_square > 0.0 {
                block_power(&buf, per_block, sample_rate, freq) / mean_square
            } else {
                0.0
            };
            let silent = rms < criteria.silence_rms;
            ToneWindow {
                start: criteria.window * u32::try_from(i).unwrap_or(u32::MAX),
                rms,
                tone_share,
                silent,
                tone: !silent && tone_share >= criteria.min_tone_share,
            }
        })
        .collect();

    let tone_windows = windows.iter().filter(|w| w.tone).count();
    let first_tone = windows.iter().find(|w| w.tone).map(|w| w.start);
    let last_tone = windows.iter().rev().find(|w| w.tone).map(|w| w.start + criteria.window);
    let silent = windows.iter().filter(|w| w.silent).count();
    let mut longest = 0u32;
    let mut run = 0u32;
    let mut seen_tone = false;
    for w in &windows {
        if w.tone {
            if seen_tone {
                longest = longest.max(run);
            }
            seen_tone = true;
            run = 0;
        } else {
            run += 1;
        }
    }
    ToneReport {
        window: criteria.window,
        tone_windows,
        first_tone,
        last_tone,
        silent_time: criteria.window * u32::try_from(silent).unwrap_or(u32::MAX),
        longest_gap: criteria.window * longest,
        windows,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sine(freq: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((TAU * freq * i as f64 / 48_000.0).sin() * amplitude * 32767.0) as i16)
            .collect()
    }

    #[test]
    fn a_pure_tone_has_all_its_power_at_its_frequency() {
        let x: Vec<f64> = sine(440.0, 0.5, 4800).iter().map(|&s| f64::from(s) / 32768.0).collect();
        let p = goertzel_power(&x, 48_000, 440.0);
        assert!((p - 0.125).abs() < 0.01, "{p}");
        assert!(goertzel_power(&x, 48_000, 660.0) < 0.001);
        // Off the 10 Hz bin grid it still reads most of the power (Hann scalloping).
        let y: Vec<f64> = sine(445.0, 0.5, 4800).iter().map(|&s| f64::from(s) / 32768.0).collect();
        assert!(goertzel_power(&y, 48_000, 445.0) > 0.09);
    }

    #[test]
    fn report_finds_gaps_and_silence_between_tone_windows() {
        let mut rec = vec![0i16; 4800 * 2]; // 200 ms of leading silence
        rec.extend(sine(440.0, 0.3, 4800 * 5));
        rec.extend(vec![0; 4800 * 3]); // a 300 ms gap
        rec.extend(sine(440.0, 0.3, 4800 * 5));
        rec.extend(sine(660.0, 0.3, 4800)); // another tone: not ours
        let report = analyze_tone(&rec, 48_000, 440.0, &ToneCriteria::default());
        assert_eq!(report.windows.len(), 16);
        assert_eq!(report.tone_windows, 10);
        assert_eq!(report.first_tone, Some(Duration::from_millis(200)));
        assert_eq!(report.last_tone, Some(Duration::from_millis(1500)));
        assert_eq!(report.longest_gap, Duration::from_millis(300));
        assert_eq!(report.silent_time, Duration::from_millis(500));
        assert_eq!(report.silent_time_during_tone(), Duration::from_millis(300));
        assert!((report.tone_fraction() - 10.0 / 13.0).abs() < 1e-9);
        assert!(!report.windows[15].tone && !report.windows[15].silent);
    }

    #[test]
    fn silence_and_empty_input_have_no_tone() {
        let report = analyze_tone(&[0; 48_000], 48_000, 440.0, &ToneCriteria::default());
        assert_eq!(report.tone_windows, 0);
        assert_eq!(report.tone_fraction(), 0.0);
        assert_eq!(report.silent_time, Duration::from_secs(1));
        let report = analyze_tone(&[], 48_000, 440.0, &ToneCriteria::default());
        assert!(report.windows.is_empty());
    }
}
