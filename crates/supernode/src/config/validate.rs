//! Checking a configuration: every field against its range, every problem collected, so that an
//! operator fixes them all in one go instead of one per start.

use std::fmt;

/// One field that is out of its range or does not fit with another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field's TOML path, e.g. `limits.max_connections`.
    pub field: String,
    /// What is wrong and what is allowed, e.g. `is 0; must be between 1 and 10000000`.
    pub message: String,
}

/// Every problem of a configuration (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidConfig {
    /// The problems, in the order of the fields in deploy/supernode.toml.
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "invalid configuration ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

/// Collects the problems of one configuration.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    /// Records a problem with `field`.
    pub(crate) fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem { field: field.to_owned(), message: message.into() });
    }

    /// A whole number between `min` and `max`, both included.
    pub(crate) fn int(&mut self, field: &str, value: impl TryInto<u64>, min: u64, max: u64) {
        // Every field is unsigned and at most 64 bits wide: a failed conversion cannot happen,
        // and would count as too large.
        let v: u64 = value.try_into().unwrap_or(u64::MAX);
        if !(min..=max).contains(&v) {
            self.fail(field, format!("is {v}; must be between {min} and {max}"));
        }
    }

    /// A number between `min` and `max`, both included (NaN and infinities are refused).
    pub(crate) fn float(&mut self, field: &str, value: f64, min: f64, max: f64) {
        if !(min..=max).contains(&value) {
            self.fail(field, format!("is {value}; must be a number between {min} and {max}"));
        }
    }

    /// A rate: more than 0 (a rate of 0 or less would refuse everything, for ever) and at most
    /// `max`.
    pub(crate) fn rate(&mut self, field: &str, value: f64, max: f64) {
        if !(value > 0.0 && value <= max) {
            self.fail(field, format!("is {value}; must be more than 0 and at most {max}"));
        }
    }

    /// `Ok` if nothing was recorded, else every problem.
    pub(crate) fn finish(self) -> Result<(), InvalidConfig> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidConfig { problems: self.problems })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Config;

    fn problems(toml_text: &str) -> Vec<(String, String)> {
        let config: Config = toml::from_str(toml_text).unwrap();
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| (p.field, p.message)).collect(),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    /// The values from the operator's report (issue 13), all in one file: each is named by its
    /// TOML path with its allowed range, all at once.
    #[test]
    fn every_bad_field_is_reported_at_once_by_its_path_and_range() {
        let found = problems(
            "[limits]\nmax_connections = 0\nrequests_per_second = -5.0\n\
             handshake_timeout_secs = 100000\nlogins_per_second = nan\n\
             [sessions]\ntoken_lifetime_days = 0\n[calls]\ninvites_per_minute = -1.0\n",
        );
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "limits.max_connections",
                "limits.handshake_timeout_secs",
                "limits.requests_per_second",
                "limits.logins_per_second",
                "sessions.token_lifetime_days",
                "calls.invites_per_minute",
            ]
        );
        let max_connections = &found[0].1;
        assert_eq!(max_connections, "is 0; must be between 1 and 10000000");
        assert!(found[2].1.contains("more than 0"), "{found:?}");
        assert!(found[4].1.contains("between 1 and 3650"), "{found:?}");
    }

    #[test]
    fn each_range_refuses_its_edges_and_accepts_its_bounds() {
        // Field, a value just outside, the bound just inside.
        let cases = [
            ("[limits]\nheartbeat_timeout_secs = 4", "[limits]\nheartbeat_timeout_secs = 5"),
            ("[limits]\ndrain_secs = 601", "[limits]\ndrain_secs = 600"),
            ("[limits]\nsend_queue_frames = 0", "[limits]\nsend_queue_frames = 1"),
            ("[limits]\nlogin_burst = 0.5", "[limits]\nlogin_burst = 1.0"),
            ("[limits]\nlogins_per_second = 0.0", "[limits]\nlogins_per_second = 0.05"),
            ("[limits]\nmax_devices = 0", "[limits]\nmax_devices = 10000"),
            ("[limits]\nsearches_per_minute = inf", "[limits]\nsearches_per_minute = 1.0"),
            ("[messages]\nretention_days = 0", "[messages]\nretention_days = 3650"),
            ("[calls]\nring_timeout_secs = 0", "[calls]\nring_timeout_secs = 600"),
            ("[calls]\nmax_calls_per_user = 0", "[calls]\nmax_calls_per_user = 1"),
            ("[turn]\ncredential_lifetime_secs = 59", "[turn]\ncredential_lifetime_secs = 60"),
            ("[turn]\ncredentials_per_minute = 0.5", "[turn]\ncredentials_per_minute = 1.0"),
            ("log = \"peerline=loud\"", "log = \"peerline_supernode=debug,warn\""),
            ("data_dir = \"\"", "data_dir = \"/var/lib/peerline\""),
            ("tls_names = [\"a b\"]", "tls_names = [\"sn1.example.org\", \"192.0.2.1\"]"),
        ];
        for (bad, good) in cases {
            let found = problems(bad);
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            let field = bad.split('=').next().unwrap().trim().replace("[", "").replace("]\n", ".");
            assert_eq!(found[0].0, field, "{bad}");
            assert_eq!(problems(good), Vec::new(), "{good}");
        }
    }

    /// deploy/supernode.toml says each field's range ("# Allowed: A to B." above it): the
    /// validation agrees at both bounds and just past the top.
    #[test]
    fn the_ranges_in_the_example_config_are_the_ones_checked() {
        let example = include_str!("../../../../deploy/supernode.toml");
        let (mut section, mut allowed, mut checked) = (String::new(), None, 0);
        for line in example.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("[{name}]\n");
            } else if let Some(range) = line.strip_prefix("# Allowed: ") {
                allowed = Some(range.trim_end_matches('.').to_owned());
            } else if let (Some(range), Some((key, default))) =
                (allowed.take(), line.split_once(" = "))
            {
                let float = default.contains('.');
                let value = |v: f64| if float { format!("{v:?}") } else { format!("{v}") };
                let (low, high, low_ok) = match range.strip_prefix("more than 0, at most ") {
                    Some(high) => (0.0, high.parse::<f64>().unwrap(), false),
                    None => {
                        let (low, high) = range.split_once(" to ").unwrap();
                        (low.parse().unwrap(), high.parse().unwrap(), true)
                    }
                };
                let set = |v: f64| problems(&format!("{section}{key} = {}", value(v)));
                assert_eq!(set(high), Vec::new(), "{section}{key} = {high}");
                assert_eq!(set(low).is_empty(), low_ok, "{section}{key} = {low}");
                let path = format!("{}{key}", section.trim_start_matches('[').replace("]\n", "."));
                let above = set(high * 10.0 + 1.0);
                assert_eq!(above.len(), 1, "{path}: {above:?}");
                assert_eq!(above[0].0, path.trim_start_matches('.'));
                checked += 1;
            }
        }
        assert!(checked >= 35, "only {checked} ranges found");
    }

    #[test]
    fn the_message_lists_every_problem_on_its_own_line() {
        let mut c = Config::default();
        c.limits.max_connections = 0;
        c.sessions.token_lifetime_days = 0;
        let text = c.validate().unwrap_err().to_string();
        assert_eq!(
            text,
            "invalid configuration (2 problems):\n  \
             limits.max_connections: is 0; must be between 1 and 10000000\n  \
             sessions.token_lifetime_days: is 0; must be between 1 and 3650"
        );
    }
}
