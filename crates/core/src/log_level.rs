//! `LOG_LEVEL`, as the original design's Python functions read it and as `tracing` filters it.

/// The levels a bare `LOG_LEVEL` may name, after Python's names are mapped onto them.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The `tracing` filter for a `LOG_LEVEL`: Python's names (`DEBUG`, `INFO`, `WARNING`, `ERROR`,
/// `CRITICAL`) or `tracing`'s in any case (empty is `info`), or a filter list such as
/// `info,dlq_healer_core=debug`.
///
/// A bare word that is not a level is refused: `tracing` would take it for a module name and log
/// nothing else, alerts included.
pub fn log_filter(level: &str) -> Result<String, String> {
    let level = level.trim().to_ascii_lowercase();
    if level.is_empty() {
        return Ok("info".into());
    }
    level
        .split(',')
        .map(|directive| {
            let directive = directive.trim();
            if directive.contains('=') {
                return Ok(directive.to_string());
            }
            let mapped = match directive {
                "warning" => "warn",
                "critical" | "fatal" => "error",
                other => other,
            };
            if LEVELS.contains(&mapped) {
                Ok(mapped.to_string())
            } else {
                Err(format!(
                    "{directive:?} is not a log level: use error, warn (or warning), info, debug \
                     or trace, or a filter such as info,dlq_healer_core=debug"
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|directives| directives.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_and_tracing_level_names_become_filters() {
        assert_eq!(log_filter("WARNING").unwrap(), "warn");
        assert_eq!(log_filter(" INFO ").unwrap(), "info");
        assert_eq!(log_filter("CRITICAL").unwrap(), "error");
        assert_eq!(log_filter("Debug").unwrap(), "debug");
        assert_eq!(log_filter("").unwrap(), "info");
        assert_eq!(log_filter("info,hyper=warn").unwrap(), "info,hyper=warn");
        assert_eq!(
            log_filter("WARNING,dlq_healer_core=debug").unwrap(),
            "warn,dlq_healer_core=debug"
        );
    }

    #[test]
    fn a_word_that_is_not_a_level_is_refused_with_the_levels() {
        for bad in ["loud", "verbose", "info,loud"] {
            let error = log_filter(bad).unwrap_err();
            assert!(error.contains("is not a log level"), "{bad}: {error}");
            assert!(error.contains("warn (or warning)"), "{bad}: {error}");
        }
    }
}
