//! The Opus encoder and decoder as a call uses them: mono, 48 kHz, 20 ms frames, in-band FEC,
//! optional DTX, and a decoder that never fails on bad peer input (it conceals instead).

use opus::{Application, Bitrate, Channels, Decoder, Encoder};

use crate::{FRAME_SAMPLES, SAMPLE_RATE};

/// Largest Opus packet (RFC 6716 §3.2.1: 1275 bytes per frame) with room to spare.
const MAX_PACKET: usize = 1500;

/// Longest packet Opus may produce: 120 ms at 48 kHz.
pub(crate) const MAX_PACKET_SAMPLES: usize = 5760;

/// Smallest step of Opus frame sizes: 2.5 ms at 48 kHz. PLC and FEC need multiples of it.
pub(crate) const OPUS_GRANULE: u64 = 120;

/// Encoder settings taken from [`MediaConfig`](crate::MediaConfig).
pub(crate) struct EncoderSettings {
    pub bitrate: i32,
    pub complexity: i32,
    pub fec: bool,
    pub expected_loss_percent: i32,
    pub dtx: bool,
}

pub(crate) struct OpusEncoder {
    inner: Encoder,
    buf: Box<[u8; MAX_PACKET]>,
}

impl OpusEncoder {
    pub(crate) fn new(settings: &EncoderSettings) -> Result<Self, opus::Error> {
        let mut inner = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        inner.set_bitrate(Bitrate::Bits(settings.bitrate))?;
        inner.set_complexity(settings.complexity)?;
        // In-band FEC (LBRR) only appears when the encoder expects loss (RFC 6716 §2.1.7).
        inner.set_inband_fec(settings.fec)?;
        inner.set_packet_loss_perc(settings.expected_loss_percent)?;
        inner.set_dtx(settings.dtx)?;
        Ok(OpusEncoder { inner, buf: Box::new([0; MAX_PACKET]) })
    }

    /// Encodes one 20 ms frame. Returns `None` when DTX says the packet need not be sent: libopus
    /// documents that packets of two bytes or less carry no audio in DTX.
    pub(crate) fn encode(
        &mut self,
        frame: &[i16; FRAME_SAMPLES],
    ) -> Result<Option<Vec<u8>>, opus::Error> {
        let len = self.inner.encode(frame, &mut self.buf[..])?;
        if len <= 2 {
            return Ok(None);
        }
        Ok(self.buf.get(..len).map(<[u8]>::to_vec))
    }
}

pub(crate) struct OpusDecoder {
    inner: Decoder,
}

impl OpusDecoder {
    pub(crate) fn new() -> Result<Self, opus::Error> {
        Ok(OpusDecoder { inner: Decoder::new(SAMPLE_RATE, Channels::Mono)? })
    }

    /// Decodes a received packet, appending its samples. A packet libopus rejects is concealed
    /// instead (`samples` of PLC), so a corrupt packet from the peer costs a glitch, not the call.
    pub(crate) fn decode(&mut self, packet: &[u8], samples: usize, out: &mut Vec<i16>) -> usize {
        let mut buf = [0i16; MAX_PACKET_SAMPLES];
        match self.inner.decode(packet, &mut buf[..], false) {
            Ok(n) if n > 0 => {
                out.extend(buf.iter().take(n));
                n
            }
            _ => self.conceal(samples, out),
        }
    }

    /// Recovers a lost frame of `samples` from the in-band FEC data of the packet after it.
    /// libopus falls back to PLC when that packet carries no FEC data.
    pub(crate) fn decode_fec(
        &mut self,
        next_packet: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> usize {
        let samples = samples.min(MAX_PACKET_SAMPLES);
        let mut buf = [0i16; MAX_PACKET_SAMPLES];
        let Some(target) = buf.get_mut(..samples) else { return 0 };
        match self.inner.decode(next_packet, target, true) {
            Ok(n) if n > 0 => {
                out.extend(buf.iter().take(n));
                n
            }
            _ => self.conceal(samples, out),
        }
    }

    /// Packet-loss concealment: decodes "no packet" for `samples` (RFC 6716 §4.4).
    pub(crate) fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> usize {
        let samples = samples.min(MAX_PACKET_SAMPLES);
        let mut buf = [0i16; MAX_PACKET_SAMPLES];
        let decoded = match buf.get_mut(..samples) {
            Some(target) => self.inner.decode(&[], target, false).unwrap_or(0),
            None => 0,
        };
        if decoded == 0 {
            // The decoder could not conceal (it never saw a packet): play silence.
            out.extend(std::iter::repeat_n(0, samples));
            return samples;
        }
        out.extend(buf.iter().take(decoded));
        decoded
    }
}

/// Samples (at 48 kHz) that an Opus packet carries, or `None` for a malformed packet.
pub(crate) fn packet_samples(packet: &[u8]) -> Option<u64> {
    match opus::packet::get_nb_samples(packet, SAMPLE_RATE) {
        Ok(n) if n > 0 && n <= MAX_PACKET_SAMPLES => Some(n as u64),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::audio::{AudioSource, ToneSource};
    use crate::tone::{ToneCriteria, analyze_tone};

    fn tone_packets(fec: bool, frames: usize) -> Vec<Vec<u8>> {
        let settings = EncoderSettings {
            bitrate: 32_000,
            complexity: 10,
            fec,
            expected_loss_percent: 10,
            dtx: true,
        };
        let mut enc = OpusEncoder::new(&settings).unwrap();
        let mut tone = ToneSource::new(440.0);
        (0..frames).map(|_| enc.encode(&tone.next_frame().unwrap()).unwrap().unwrap()).collect()
    }

    #[test]
    fn the_encoder_sends_in_band_fec_that_the_decoder_uses() {
        let packets = tone_packets(true, 20);
        assert!(packets.iter().all(|p| packet_samples(p) == Some(960)));
        // Two decoders in the same state; packet 10 is lost. One recovers it from packet 11's
        // FEC data, the other conceals. Different output means FEC data was there and used.
        let (mut with_fec, mut with_plc) =
            (OpusDecoder::new().unwrap(), OpusDecoder::new().unwrap());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for p in &packets[..10] {
            with_fec.decode(p, 960, &mut a);
            with_plc.decode(p, 960, &mut b);
        }
        a.clear();
        b.clear();
        assert_eq!(with_fec.decode_fec(&packets[11], 960, &mut a), 960);
        assert_eq!(with_plc.conceal(960, &mut b), 960);
        assert_ne!(a, b);
    }

    #[test]
    fn lost_packets_are_recovered_without_losing_the_tone_or_the_timeline() {
        let packets = tone_packets(true, 100);
        let lost = [1usize, 18, 29, 33, 41, 60, 61, 80, 81, 82];
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if lost.contains(&i) {
                continue;
            }
            if i > 0 && lost.contains(&(i - 1)) {
                let mut gap = 1;
                while lost.contains(&(i - 1 - gap)) {
                    gap += 1;
                }
                for _ in 1..gap {
                    dec.conceal(960, &mut out);
                }
                dec.decode_fec(p, 960, &mut out);
            }
            dec.decode(p, 960, &mut out);
        }
        assert_eq!(out.len(), 100 * 960);
        let report = analyze_tone(&out, SAMPLE_RATE, 440.0, &ToneCriteria::default());
        assert_eq!(report.tone_windows, report.windows.len(), "{report:?}");
        // Garbage from the peer is concealed, not an error.
        assert_eq!(dec.decode(&[0xff; 7], 960, &mut out), 960);
    }
}
