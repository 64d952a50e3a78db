//! `statehold_build_info` and the process metrics of the Prometheus
//! conventions (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), read
//! from `/proc/self` at each scrape. Off Linux only the build info is
//! rendered.

use super::{help, line};

/// The version and commit of this build (`build.rs`).
pub fn render_build_info(out: &mut String) {
    let name = "statehold_build_info";
    help(
        out,
        name,
        "gauge",
        "Always 1; the build's version and commit.",
    );
    line(
        out,
        format_args!(
            "{name}{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("STATEHOLD_COMMIT")
        ),
    );
}

/// What `/proc/self` tells of this process, if it can be read.
pub fn render_process(out: &mut String) {
    let Some(stat) = Stat::read() else {
        return;
    };
    let values: [(&str, &str, &str, f64); 5] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            stat.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            stat.rss_bytes,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            open_fds().unwrap_or(0) as f64,
        ),
        (
            "process_max_fds",
            "gauge",
            "The limit of open file descriptors.",
            max_fds().unwrap_or(0) as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time since the Unix epoch, in seconds.",
            stat.start_time,
        ),
    ];
    for (name, kind, text, value) in values {
        help(out, name, kind, text);
        line(out, format_args!("{name} {value}"));
    }
}

struct Stat {
    cpu_seconds: f64,
    rss_bytes: f64,
    start_time: f64,
}

impl Stat {
    /// `/proc/self/stat` fields 14, 15 (utime, stime), 22 (starttime, in
    /// clock ticks after boot) and 24 (rss, in pages), counted after the
    /// command name, which may hold spaces and parentheses.
    fn read() -> Option<Stat> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        // after_name starts at field 3 (state).
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let (ticks, page) = (ticks.max(1) as f64, page.max(1) as f64);
        let boot = boot_time()?;
        Some(Stat {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            rss_bytes: field(24)? * page,
            start_time: boot + field(22)? / ticks,
        })
    }
}

/// `btime` of `/proc/stat`: boot time since the epoch, in seconds.
fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_fds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let row = text.lines().find(|l| l.starts_with("Max open files"))?;
    row["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
