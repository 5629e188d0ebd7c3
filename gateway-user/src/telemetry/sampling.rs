//! `randomSampling` / `clientSampling`: a constant, a ratio, or a CEL expression that yields a
//! bool or a 0..1 ratio, evaluated at request start.

use crate::cel::{CelError, Executor, Expression, Refs, Value};
use crate::config::telemetry::StringBoolFloat;
use crate::ctx::RequestLog;

use super::TelemetryError;

/// A compiled sampling decision.
#[derive(Debug)]
pub enum Sampler {
    Always(bool),
    /// Probability in `[0, 1]`.
    Ratio(f64),
    Expr(Expression),
}

// === impl Sampler ===

impl Sampler {
    /// `path` names the YAML field for errors.
    pub fn compile(v: &StringBoolFloat, path: &str) -> Result<Sampler, TelemetryError> {
        match v {
            StringBoolFloat::Bool(b) => Ok(Sampler::Always(*b)),
            StringBoolFloat::Float(f) => ratio(*f, path, &f.to_string()),
            StringBoolFloat::String(s) => {
                let t = s.trim();
                match t {
                    "true" => return Ok(Sampler::Always(true)),
                    "false" => return Ok(Sampler::Always(false)),
                    _ => {}
                }
                if let Ok(f) = t.parse::<f64>() {
                    return ratio(f, path, s);
                }
                Expression::compile(t)
                    .map(Sampler::Expr)
                    .map_err(|source| TelemetryError::Cel {
                        path: path.to_owned(),
                        source,
                    })
            }
        }
    }

    pub fn refs(&self) -> Refs {
        match self {
            Sampler::Expr(e) => e.references(),
            _ => Refs::default(),
        }
    }

    /// Decides for one request. An evaluation error or a non-bool/number result does not
    /// sample (and is reported through `Err` so the caller can count it). Data the request
    /// does not have (`request.headers["x-debug"]` without that header: a missing key, per the
    /// CEL spec) does not sample either, and is no error.
    pub fn sample(&self, log: &RequestLog) -> Result<bool, CelError> {
        match self {
            Sampler::Always(b) => Ok(*b),
            Sampler::Ratio(r) => Ok(roll(*r)),
            Sampler::Expr(e) => {
                let v = match Executor::new(log, e.references()).eval(e) {
                    Err(CelError::Missing(_)) => return Ok(false),
                    other => other?,
                };
                match v {
                    Value::Bool(b) => Ok(b),
                    Value::Float(f) => Ok(roll(f)),
                    Value::Int(i) => Ok(roll(i as f64)),
                    Value::UInt(u) => Ok(roll(u as f64)),
                    other => Err(CelError::Eval(format!(
                        "sampling expression must give a bool or a number, got {other:?}"
                    ))),
                }
            }
        }
    }
}

fn ratio(f: f64, path: &str, shown: &str) -> Result<Sampler, TelemetryError> {
    if !(0.0..=1.0).contains(&f) {
        return Err(TelemetryError::Invalid {
            path: path.to_owned(),
            value: shown.to_owned(),
            msg: "a sampling ratio must be between 0.0 and 1.0".into(),
        });
    }
    Ok(Sampler::Ratio(f))
}

fn roll(r: f64) -> bool {
    if r >= 1.0 {
        true
    } else if r <= 0.0 || r.is_nan() {
        false
    } else {
        rand::random::<f64>() < r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(v: StringBoolFloat) -> Sampler {
        Sampler::compile(&v, "config.tracing.randomSampling").expect("compiles")
    }

    #[test]
    fn constants_and_ratios() {
        let log = RequestLog::new("g".into(), "l".into());
        for (v, want) in [
            (StringBoolFloat::Bool(true), true),
            (StringBoolFloat::Bool(false), false),
            (StringBoolFloat::String("true".into()), true),
            (StringBoolFloat::String(" false ".into()), false),
            (StringBoolFloat::Float(1.0), true),
            (StringBoolFloat::Float(0.0), false),
            (StringBoolFloat::String("1".into()), true),
            (StringBoolFloat::String("0.0".into()), false),
        ] {
            assert_eq!(compile(v.clone()).sample(&log).expect("ok"), want, "{v:?}");
        }
    }

    #[test]
    fn half_ratio_samples_roughly_half() {
        let s = compile(StringBoolFloat::Float(0.5));
        let log = RequestLog::new("g".into(), "l".into());
        let n = (0..4000).filter(|_| s.sample(&log).expect("ok")).count();
        assert!((1600..2400).contains(&n), "{n}");
    }

    #[test]
    fn expression_sees_the_request() {
        let s = compile(StringBoolFloat::String(
            r#"request.headers["x-debug"] == "1""#.into(),
        ));
        let mut log = RequestLog::new("g".into(), "l".into());
        assert!(!s.sample(&log).expect("ok"));
        log.request_headers.push(("X-Debug".into(), "1".into()));
        assert!(s.sample(&log).expect("ok"));
        let ratio = compile(StringBoolFloat::String(
            r#"request.path == "/a" ? 1.0 : 0.0"#.into(),
        ));
        log.path = "/a".into();
        assert!(ratio.sample(&log).expect("ok"));
        log.path = "/b".into();
        assert!(!ratio.sample(&log).expect("ok"));
        let bad = compile(StringBoolFloat::String("'yes'".into()));
        assert!(bad.sample(&log).is_err());
    }

    #[test]
    fn out_of_range_ratio_is_a_config_error() {
        let err = Sampler::compile(
            &StringBoolFloat::Float(1.5),
            "config.tracing.randomSampling",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("config.tracing.randomSampling"),
            "{err}"
        );
        assert!(err.to_string().contains("1.5"), "{err}");
    }
}
