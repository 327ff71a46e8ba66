//! Whether the process's heap can live in transparent huge pages, said once in the start-up log.
//!
//! Why it matters: a dht node's records and tables are scattered small allocations, and with
//! 4 KiB pages every lookup of a large channel misses the TLB as well as the cache. glibc's
//! malloc puts its heap in huge pages only when started with `GLIBC_TUNABLES` holding
//! `glibc.malloc.hugetlb=1` (it then advises each step of the heap with `MADV_HUGEPAGE` before
//! touching it), and the kernel grants them only when
//! `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`. A tunable can only be
//! set before the process starts, so the node cannot turn it on itself: the systemd units set it
//! (`deploy/systemd/dhtnode@.service`), and this note tells an operator who starts the node by
//! hand what the node runs with (docs/operations.md, "Memory: the huge-page heap").

/// The kernel's setting file for transparent huge pages.
const THP_ENABLED_PATH: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// What the heap runs with, in one log line.
pub fn describe() -> String {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let kernel = std::fs::read_to_string(THP_ENABLED_PATH).unwrap_or_default();
    describe_from(&tunables, &kernel)
}

/// [`describe`] from the environment variable's value and the kernel file's text.
fn describe_from(tunables: &str, kernel_setting: &str) -> String {
    let mode = selected_mode(kernel_setting);
    match (hugetlb_value(tunables), mode) {
        (Some("1"), Some("always" | "madvise")) => format!(
            "heap in transparent huge pages (glibc.malloc.hugetlb=1, kernel: {})",
            mode.unwrap_or_default()
        ),
        (Some("1"), _) => format!(
            "heap in small pages: glibc.malloc.hugetlb=1 asks for huge pages but the kernel's \
             transparent huge pages are '{}' ({THP_ENABLED_PATH})",
            mode.unwrap_or("unknown")
        ),
        (Some("2"), _) => "heap in reserved huge pages if the kernel set some aside \
                           (glibc.malloc.hugetlb=2, vm.nr_hugepages), else in small pages"
            .to_string(),
        (_, Some("always")) => {
            "heap in transparent huge pages (the kernel's setting is 'always')".to_string()
        }
        _ => "heap in small pages: start the node with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
              (the systemd unit does) for fewer TLB misses on large channels \
              (docs/operations.md, \"Memory: the huge-page heap\")"
            .to_string(),
    }
}

/// The value of `glibc.malloc.hugetlb` in a `GLIBC_TUNABLES` value (colon-separated
/// `name=value` pairs): "1" asks for transparent huge pages (advised), "2" for hugetlbfs pages
/// the kernel reserved (`vm.nr_hugepages`), anything else for none.
fn hugetlb_value(tunables: &str) -> Option<&str> {
    tunables
        .split(':')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim() == "glibc.malloc.hugetlb")
        .map(|(_, value)| value.trim())
}

/// The mode the kernel file marks as chosen: "always [madvise] never" gives "madvise".
fn selected_mode(kernel_setting: &str) -> Option<&str> {
    let start = kernel_setting.find('[')?;
    let end = kernel_setting[start..].find(']')? + start;
    Some(&kernel_setting[start + 1..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunable_is_found_among_others() {
        assert_eq!(hugetlb_value("glibc.malloc.hugetlb=1"), Some("1"));
        assert_eq!(
            hugetlb_value("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"),
            Some("2")
        );
        assert_eq!(hugetlb_value("glibc.malloc.hugetlb=0"), Some("0"));
        assert_eq!(hugetlb_value("glibc.malloc.arena_max=1"), None);
        assert_eq!(hugetlb_value(""), None);
    }

    #[test]
    fn the_kernel_mode_is_the_bracketed_one() {
        assert_eq!(selected_mode("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected_mode("[always] madvise never"), Some("always"));
        assert_eq!(selected_mode(""), None);
    }

    #[test]
    fn the_note_says_small_pages_and_why() {
        let advised = describe_from("glibc.malloc.hugetlb=1", "always [madvise] never");
        assert!(
            advised.starts_with("heap in transparent huge pages"),
            "{advised}"
        );
        let reserved = describe_from("glibc.malloc.hugetlb=2", "always [madvise] never");
        assert!(reserved.contains("vm.nr_hugepages"), "{reserved}");
        let off = describe_from("glibc.malloc.hugetlb=0", "always [madvise] never");
        assert!(off.starts_with("heap in small pages"), "{off}");
        let kernel_off = describe_from("glibc.malloc.hugetlb=1", "always madvise [never]");
        assert!(kernel_off.contains("'never'"), "{kernel_off}");
        let not_asked = describe_from("", "always [madvise] never");
        assert!(
            not_asked.contains("GLIBC_TUNABLES=glibc.malloc.hugetlb=1"),
            "{not_asked}"
        );
        let kernel_always = describe_from("", "[always] madvise never");
        assert!(
            kernel_always.starts_with("heap in transparent huge pages"),
            "{kernel_always}"
        );
    }
}
