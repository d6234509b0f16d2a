//! The typed values of the settings, and one parser per kind of value. Flags (as clap value
//! parsers), environment variables and the config file all go through these parsers, so every
//! source accepts the same spellings and refuses the same values for the same reason. A parser
//! says only why a value is wrong; the source adds the value and its own name, as clap does
//! for flags ("invalid value '0s' for '--interval <INTERVAL>': must be more than zero").

use std::{net::SocketAddr, time::Duration};

use clap::ValueEnum;
use serde::{de, Deserialize, Deserializer};

/// The shortest snapshot interval: reading the kernel maps more often costs more than it shows.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Where snapshots go besides OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One JSON object per (cgroup, device, operation) and interval on standard output.
    Jsonl,
}

/// How latency histograms are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Histogram {
    /// Exponential histogram at scale 0: the kernel's buckets one to one.
    Exponential,
    /// Explicit bounds at the same powers of two, for backends without exponential histograms.
    Explicit,
}

/// Aggregation temporality of the exported metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Temporality {
    /// Values since the series' start.
    Cumulative,
    /// Values since the last export the collector accepted.
    Delta,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, path `/v1/metrics`).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// Compression of OTLP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// gzip, which every OTLP receiver understands.
    Gzip,
    /// Uncompressed.
    None,
}

/// Whether the kernel NFS server is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerMode {
    /// Whenever the nfsd module is loaded (late loads and reloads included).
    Auto,
    /// As auto, and a warning while nfsd is not loaded.
    On,
    /// Never.
    Off,
}

impl ServerMode {
    /// The probe's mode.
    #[must_use]
    pub fn probe(self) -> nasflow_probe::server::ServerMode {
        match self {
            Self::Auto => nasflow_probe::server::ServerMode::Auto,
            Self::On => nasflow_probe::server::ServerMode::On,
            Self::Off => nasflow_probe::server::ServerMode::Off,
        }
    }
}

/// An optional signal switched on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Collected.
    On,
    /// Not collected, and its kernel work not done.
    Off,
}

impl Switch {
    /// `true` for [`Switch::On`].
    #[must_use]
    pub fn on(self) -> bool {
        self == Self::On
    }
}

/// The file spells enumerated values as the flags do: it parses them with clap's names.
macro_rules! deserialize_as_value_enum {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                choice(&s).map_err(|e| de::Error::custom(invalid(&s, &e)))
            }
        }
    )*};
}

deserialize_as_value_enum!(Output, Histogram, Temporality, Protocol, Compression, ServerMode);

/// `on`/`off` in the file, also when a YAML 1.1 writer (Helm) turned them into booleans.
impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Self::On),
            Raw::Bool(false) => Ok(Self::Off),
            Raw::Text(s) => choice(&s).map_err(|e| de::Error::custom(invalid(&s, &e))),
        }
    }
}

/// The message for a value a source refused, e.g. ``invalid value `0s`, must be more than zero``.
pub fn invalid(value: &str, why: &str) -> String {
    format!("invalid value `{value}`, {why}")
}

/// One of an enumeration's values, or an error listing them.
pub fn choice<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(ValueEnum::to_possible_value)
            .map(|p| p.get_name().to_owned())
            .collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: case-insensitive, and `lowmemory`
/// means delta (every nasflow instrument is a counter or a histogram).
pub fn otel_temporality(s: &str) -> Result<Temporality, String> {
    match s.to_ascii_lowercase().as_str() {
        "lowmemory" => Ok(Temporality::Delta),
        lower => choice(lower),
    }
}

/// A human duration (`10s`, `500ms`) that is more than zero: a zero period would spin.
pub fn duration(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err(NOT_POSITIVE.to_owned());
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}: expected a duration such as 10s or 500ms"))?;
    positive(d)
}

/// A threshold duration where 0 (or `0s`) means off.
pub fn threshold(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(NOT_POSITIVE.to_owned());
    }
    humantime::parse_duration(s).map_err(|e| format!("{e}: expected a duration such as 500ms, or 0 for off"))
}

/// An integer number of milliseconds, more than zero: how `OTEL_*` variables give durations.
pub fn millis(s: &str) -> Result<Duration, String> {
    positive(Duration::from_millis(count::<u64>(s)?))
}

/// A snapshot interval: a duration of at least 100ms.
pub fn interval(s: &str) -> Result<Duration, String> {
    at_least_min_interval(duration(s)?)
}

/// `OTEL_METRIC_EXPORT_INTERVAL`: an interval in milliseconds.
pub fn interval_millis(s: &str) -> Result<Duration, String> {
    at_least_min_interval(millis(s)?)
}

const NOT_POSITIVE: &str = "must be more than zero";

fn positive(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err(NOT_POSITIVE.to_owned());
    }
    Ok(d)
}

fn at_least_min_interval(d: Duration) -> Result<Duration, String> {
    if d < MIN_INTERVAL {
        return Err(format!("too short, use {} or more", humantime::format_duration(MIN_INTERVAL)));
    }
    Ok(d)
}

/// Smallest request size bound: room for the self-telemetry and a few hundred series.
pub const MIN_REQUEST_BYTES: usize = 64 << 10;

/// An OTLP request size bound in bytes, at least [`MIN_REQUEST_BYTES`].
pub fn request_bytes(s: &str) -> Result<usize, String> {
    let n: usize = count(s)?;
    if n < MIN_REQUEST_BYTES {
        return Err(format!("at least {MIN_REQUEST_BYTES} bytes"));
    }
    Ok(n)
}

/// A comma-separated list (`a, b,c`), blanks dropped.
pub fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

/// A count or size of at least one: a map or budget of zero series would hold nothing.
pub fn count<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(NOT_POSITIVE.to_owned());
    }
    match s.parse::<u64>() {
        Ok(0) => Err(NOT_POSITIVE.to_owned()),
        Ok(n) => T::try_from(n).map_err(|_| "too large".to_owned()),
        Err(_) => Err("expected a whole number".to_owned()),
    }
}

/// An anomaly score threshold (`-log10 p`): a number from 1 to 300 (p from 0.1 down to the
/// smallest a score can tell apart).
pub fn score(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| "expected a number such as 6 (p <= 1e-6)".to_owned())?;
    if !(1.0..=300.0).contains(&v) {
        return Err("must be from 1 to 300 (-log10 of a probability)".to_owned());
    }
    Ok(v)
}

/// `true` or `false`, as clap reads a boolean flag from the environment.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// An address and port to listen on.
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| "expected an address and port, e.g. 0.0.0.0:9808".to_owned())
}

/// An `http://` or `https://` URL (the kubelet's), refused early when the scheme is missing.
pub fn http_url(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        Ok(s.to_owned())
    } else {
        Err("give a scheme, http:// or https://".to_owned())
    }
}

/// The OTLP collector URL and whether it is used exactly as given: the standard
/// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is, every other source gets `/v1/metrics` added to a
/// bare URL for http/protobuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL.
    pub url: String,
    /// Whether the URL already names the metrics path.
    pub exact: bool,
}

/// A collector base URL (flags, file, `OTEL_EXPORTER_OTLP_ENDPOINT`).
#[allow(clippy::unnecessary_wraps)] // a clap value parser returns a Result
pub fn endpoint(s: &str) -> Result<Endpoint, String> {
    Ok(Endpoint { url: s.to_owned(), exact: false })
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        endpoint(&s).map_err(|e| de::Error::custom(invalid(&s, &e)))
    }
}

/// One extra OTLP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value, percent-decoded.
    pub value: String,
}

/// `name=value`, the value percent-decoded as in `OTEL_EXPORTER_OTLP_HEADERS`.
pub fn header(s: &str) -> Result<Header, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            Ok(Header { name: k.trim().to_owned(), value: percent_decode(v.trim()) })
        }
        _ => Err("expected key=value".to_owned()),
    }
}

/// `k1=v1,k2=v2` (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES`); empty items are
/// skipped, malformed ones refused.
pub fn key_values(s: &str) -> Result<Vec<Header>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| header(item).map_err(|_| format!("`{item}` is not key=value")))
        .collect()
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        header(&s).map_err(|e| de::Error::custom(invalid(&s, &e)))
    }
}

/// Percent-decodes a W3C baggage-style value (`OTEL_RESOURCE_ATTRIBUTES`, headers).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.extend(u8::try_from(h * 16 + l));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Config-file fields whose values go through the parsers above (`deserialize_with`), so the
/// file refuses what flags and variables refuse. YAML gives numbers as numbers: any scalar is
/// read as its text.
pub mod file {
    use std::{fmt, time::Duration};

    use serde::{de, Deserialize, Deserializer};

    /// A YAML scalar as text.
    struct Scalar(String);

    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl de::Visitor<'_> for Visitor {
                type Value = Scalar;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string or a number")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_owned()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
            }
            d.deserialize_any(Visitor)
        }
    }

    fn parsed<'de, D: Deserializer<'de>, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, D::Error> {
        Option::<Scalar>::deserialize(d)?
            .map(|s| parse(&s.0).map_err(|e| de::Error::custom(super::invalid(&s.0, &e))))
            .transpose()
    }

    /// See [`super::duration`].
    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        parsed(d, super::duration)
    }

    /// See [`super::threshold`].
    pub fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        parsed(d, super::threshold)
    }

    pub fn request_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        parsed(d, super::request_bytes)
    }

    /// See [`super::score`].
    pub fn score<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        parsed(d, super::score)
    }

    /// See [`super::interval`].
    pub fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        parsed(d, super::interval)
    }

    /// See [`super::count`].
    pub fn count<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
        parsed(d, super::count::<T>)
    }

    /// See [`super::http_url`].
    pub fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        parsed(d, super::http_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_durations_are_refused() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["0s", "0ms", "-1s", "-5"] {
            let err = duration(bad).expect_err(bad);
            assert!(err.contains("must be more than zero"), "{err}");
        }
        assert!(duration("soon").expect_err("garbage").contains("expected a duration"));
        assert_eq!(millis("2500"), Ok(Duration::from_millis(2500)));
        assert!(millis("0").expect_err("zero").contains("must be more than zero"));
        assert!(millis("-10").expect_err("negative").contains("must be more than zero"));
        assert!(interval("50ms").expect_err("short").contains("too short, use 100ms or more"));
        assert!(interval_millis("99").is_err());
        assert_eq!(interval_millis("100"), Ok(Duration::from_millis(100)));
    }

    #[test]
    fn zero_counts_are_refused() {
        assert_eq!(count::<u32>("10240"), Ok(10_240));
        assert!(count::<u32>("0").expect_err("zero").contains("must be more than zero"));
        assert!(count::<usize>("-3").expect_err("negative").contains("must be more than zero"));
        assert!(count::<u32>("99999999999").expect_err("overflow").contains("too large"));
        assert!(count::<u32>("many").expect_err("garbage").contains("whole number"));
    }

    #[test]
    fn enumerations_list_their_values() {
        assert_eq!(choice::<Protocol>("http/protobuf"), Ok(Protocol::HttpProtobuf));
        assert_eq!(choice::<Histogram>("foo"), Err("expected one of exponential, explicit".to_owned()));
        assert_eq!(
            invalid("foo", "expected one of exponential, explicit"),
            "invalid value `foo`, expected one of exponential, explicit"
        );
        assert!(choice::<Temporality>("Delta").is_err(), "only the OTEL variable ignores case");
        assert_eq!(otel_temporality("Delta"), Ok(Temporality::Delta));
        assert_eq!(otel_temporality("LowMemory"), Ok(Temporality::Delta));
        assert!(otel_temporality("sometimes").is_err());
    }

    /// The file's spelling is clap's, for every value of every enumeration.
    #[test]
    fn file_spells_enumerations_as_the_flags() {
        fn same<T: ValueEnum + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>() {
            for v in T::value_variants() {
                let name = v.to_possible_value().expect("visible").get_name().to_owned();
                let parsed: T = serde_yaml::from_str(&format!("\"{name}\"")).expect(&name);
                assert_eq!(&parsed, v, "{name}");
            }
        }
        same::<Output>();
        same::<Histogram>();
        same::<Temporality>();
        same::<Protocol>();
        same::<Compression>();
    }

    #[test]
    fn headers_and_key_values() {
        assert_eq!(
            key_values("authorization=Bearer%20abc, x-tenant=a,,"),
            Ok(vec![
                Header { name: "authorization".into(), value: "Bearer abc".into() },
                Header { name: "x-tenant".into(), value: "a".into() }
            ])
        );
        assert!(key_values("a=b,novalue").expect_err("malformed").contains("novalue"));
        assert!(header("=v").is_err());
        assert_eq!(percent_decode("a%2Cb%zz%"), "a,b%zz%");
    }

    #[test]
    fn other_values() {
        assert_eq!(boolean("true"), Ok(true));
        assert_eq!(boolean("false"), Ok(false));
        assert!(boolean("yes").is_err());
        assert!(socket_addr("0.0.0.0:9808").is_ok());
        assert!(socket_addr("9808").expect_err("no address").contains("address and port"));
        assert!(http_url("https://10.0.0.4:10250").is_ok());
        assert!(http_url("10.0.0.1:10250").expect_err("no scheme").contains("http://"));
    }
}
