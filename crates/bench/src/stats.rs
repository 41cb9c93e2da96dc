//! The benchmark's pure arithmetic: percentiles, rates, CPU shares, and the parsing of the two
//! `/proc` files it reads. Everything here is a plain function over numbers or text, so the unit
//! tests below pin it down without a fleet.

/// Linux reports `/proc/<pid>/stat` times in `USER_HZ` ticks, which is 100 on every architecture
/// Linux exports to user space (the kernel converts from its internal `HZ`).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// The `p`-th percentile (0–100) of `sorted` (ascending) by the nearest-rank method: the
/// smallest value with at least `p` % of the values at or below it. `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `count` per second over `seconds`; `None` for an empty or instant interval.
pub fn per_second(count: u64, seconds: f64) -> Option<f64> {
    (count > 0 && seconds > 0.0).then(|| count as f64 / seconds)
}

/// CPU used over a wall-clock interval, in percent of one core (200 % = both cores of a 2-core
/// machine busy the whole time).
pub fn cpu_percent(ticks: u64, wall_seconds: f64) -> f64 {
    if wall_seconds <= 0.0 {
        return 0.0;
    }
    ticks as f64 / TICKS_PER_SECOND / wall_seconds * 100.0
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may contain spaces, so fields are counted after the last `)`.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field 14 is `fields[11]`.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in kB.
pub fn status_kb(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Total busy and total ticks of the first (`cpu `) line of `/proc/stat`: the machine's load.
pub fn machine_ticks(proc_stat: &str) -> Option<(u64, u64)> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait are the 4th and 5th values.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn a_rate_over_no_time_is_unknown() {
        assert_eq!(per_second(500, 2.0), Some(250.0));
        assert_eq!(per_second(500, 0.0), None);
        assert_eq!(per_second(0, 3.0), None);
    }

    #[test]
    fn cpu_share_is_percent_of_one_core() {
        // 150 ticks = 1.5 s of CPU over 3 s of wall time.
        assert!((cpu_percent(150, 3.0) - 50.0).abs() < 1e-9);
        // Two cores busy for 2 s.
        assert!((cpu_percent(400, 2.0) - 200.0).abs() < 1e-9);
        assert_eq!(cpu_percent(10, 0.0), 0.0);
    }

    #[test]
    fn stat_ticks_survive_a_command_name_with_spaces_and_parentheses() {
        let line =
            "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 1234 0 0 0 311 89 0 0 20 0 9 0 100 0 0";
        assert_eq!(stat_ticks(line), Some(400));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn status_lines_are_read_in_kb() {
        let status = "Name:\twafleet\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(status_kb(status, "VmHWM:"), Some(51_234));
        assert_eq!(status_kb(status, "VmSwap:"), None);
    }

    #[test]
    fn machine_load_excludes_idle_and_iowait() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n";
        assert_eq!(machine_ticks(stat), Some((150, 1000)));
    }
}
