//! Stop strings over streamed text.
//!
//! A stop string may be split across tokens, so text that could still turn out to be the
//! start of a stop string is held back until the next piece decides it. Everything before a
//! stop string is released; the stop string and anything after it never are.

/// Matches stop strings against text arriving piece by piece.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What one piece of text released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Text safe to send.
    pub text: String,
    /// A stop string was found; generation should end.
    pub stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored (the server rejects them before this).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds `piece` and returns what can be released.
    pub fn push(&mut self, piece: &str) -> Released {
        self.held.push_str(piece);
        if self.stops.is_empty() {
            return Released {
                text: std::mem::take(&mut self.held),
                stopped: false,
            };
        }
        // The earliest stop string wins.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_tail_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Released {
            text,
            stopped: false,
        }
    }

    /// Releases whatever is held (generation ended for another reason).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, cut at a
/// character boundary of `text`.
fn longest_tail_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k) && stop.starts_with(&text[text.len() - k..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces`; returns the released text and whether it stopped.
    fn feed(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let r = m.push(p);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_inside_one_piece() {
        assert_eq!(feed(&["END"], &["abcENDdef"]), ("abc".into(), true));
    }

    #[test]
    fn stop_spanning_pieces_is_never_released() {
        let stops = ["</stop>"];
        let mut m = StopMatcher::new(&["</stop>".to_string()]);
        assert_eq!(m.push("hello </").text, "hello ");
        assert_eq!(m.push("st").text, "");
        let r = m.push("op> more");
        assert_eq!(
            r,
            Released {
                text: String::new(),
                stopped: true
            }
        );
        assert_eq!(feed(&stops, &["a<", "/s", "to", "p>"]), ("a".into(), true));
    }

    #[test]
    fn false_start_is_released_later() {
        assert_eq!(
            feed(&["STOP"], &["ST", "ART", "!"]),
            ("START!".into(), false)
        );
        let mut m = StopMatcher::new(&["STOP".to_string()]);
        assert_eq!(m.push("xST").text, "x");
        assert_eq!(m.push("AR").text, "STAR");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(feed(&["bb", "a"], &["xxbbya"]), ("xx".into(), true));
        assert_eq!(
            feed(&["\n\n", "User:"], &["hi\n", "\nUser:"]),
            ("hi".into(), true)
        );
    }

    #[test]
    fn multibyte_text_is_cut_at_char_boundaries() {
        // "é" is 2 bytes; a stop starting with its second byte cannot match a tail.
        assert_eq!(
            feed(&["日本"], &["こんにちは日", "本語"]),
            ("こんにちは".into(), true)
        );
        assert_eq!(feed(&["日本"], &["é日", "x"]), ("é日x".into(), false));
    }

    #[test]
    fn every_split_point_gives_the_same_answer() {
        let text = "The answer is 42.\nObservation: done";
        let stops = ["\nObservation:", "xyz"];
        let want = feed(&stops, &[text]);
        assert_eq!(want, ("The answer is 42.".into(), true));
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let pieces = [&text[..i], &text[i..j], &text[j..]];
                assert_eq!(feed(&stops, &pieces), want, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn no_stops_releases_everything() {
        assert_eq!(feed(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(feed(&[""], &["a", "b"]), ("ab".into(), false));
    }
}
