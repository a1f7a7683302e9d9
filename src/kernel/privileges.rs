//! Checks, before touching BPF, that this process may load and attach
//! tracing programs, so the user gets the missing capability by name rather
//! than an EPERM from deep inside libbpf.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Returns an error naming the missing capabilities.
pub fn require_bpf_capabilities() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status to check capabilities: {e}"))?;
    let effective = effective_capabilities(&status)
        .ok_or("cannot parse CapEff in /proc/self/status to check capabilities")?;
    check(effective)
}

fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn check(effective: u64) -> Result<(), String> {
    let has = |cap: u32| effective & (1 << cap) != 0;
    // CAP_SYS_ADMIN covers both, and is what kernels before 5.8 require.
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect();
    Err(format!(
        "missing capability {}: run as root, or grant CAP_BPF and CAP_PERFMON \
         (CAP_SYS_ADMIN on kernels before 5.8)",
        missing.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn root_or_bpf_plus_perfmon_pass() {
        assert!(check(1 << CAP_SYS_ADMIN).is_ok());
        assert!(check((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_ok());
    }

    #[test]
    fn names_what_is_missing() {
        let none = check(0).unwrap_err();
        assert!(
            none.starts_with("missing capability CAP_BPF and CAP_PERFMON:"),
            "{none}"
        );
        let no_perfmon = check(1 << CAP_BPF).unwrap_err();
        assert!(
            no_perfmon.starts_with("missing capability CAP_PERFMON:"),
            "{no_perfmon}"
        );
    }
}
