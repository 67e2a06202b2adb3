//! Which CPUs take the interrupts of the disk a path is on: where the kernel
//! completes the writer's segment writes, and where ext4 converts what they
//! wrote from unwritten extents, on a kernel worker bound to that CPU. A
//! server thread that does not sleep on such a CPU delays those completions
//! by up to a scheduler tick, and the disk idles meanwhile (OPERATIONS.md,
//! "Placing the server's threads: the disk's interrupt CPU"), unless the
//! disk's `rq_affinity` is 2: the block layer then finishes each write on
//! the CPU that submitted it, the writer's, which sleeps. Read once at
//! start from sysfs and procfs, for one log line; best effort: `None`
//! wherever the chain from the path to a PCI device's interrupt vectors is
//! not there (tmpfs, device-mapper, loop devices, no sysfs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The disk under a path and the CPUs its interrupts went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIrqs {
    /// The block device's name (`vda`, `nvme0n1p2`).
    pub device: String,
    /// The interrupt vectors of its controller that took at least 1 % of
    /// its interrupts (not, say, a configuration vector that fired once).
    pub vectors: usize,
    /// The CPUs those vectors are delivered to, in order.
    pub cpus: Vec<usize>,
    /// The disk's `queue/rq_affinity`: 1 (the kernel's default) finishes a
    /// write on a CPU that shares a cache with the one that submitted it,
    /// often the interrupt's; 2 on the submitting CPU itself; 0 where the
    /// interrupt came. `None` if it could not be read.
    pub rq_affinity: Option<u8>,
}

/// The disk `path` is on, and the CPUs that take its interrupts.
pub fn disk_interrupt_cpus(path: &Path) -> Option<DiskIrqs> {
    under_root(path, Path::new("/"))
}

/// Logs, once at start, the CPUs that take the interrupts of the disk
/// `spool` is on, when they are fewer than the online CPUs (an NVMe drive
/// usually has a vector per CPU or per few CPUs and completes each write
/// on or near the CPU that submitted it, so its line, if any, names the
/// CPUs whose vectors carried its I/O so far).
pub(crate) fn log_disk_interrupt_cpus(spool: &Path) {
    let Some(d) = disk_interrupt_cpus(spool) else {
        return;
    };
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| cpu_list(&s))
        .map_or(0, |c| c.len());
    if d.cpus.len() >= online {
        return;
    }
    let effect = if d.rq_affinity == Some(2) {
        "its rq_affinity is 2, so segment writes are finished on the writer's own CPU"
    } else {
        "a server thread that does not sleep there delays the completion of segment writes; writing 2 to the disk's queue/rq_affinity moves that work to the writer's own CPU (OPERATIONS.md, \"Placing the server's threads\")"
    };
    tracing::info!(
        device = d.device.as_str(),
        vectors = d.vectors,
        cpus = ?d.cpus,
        online,
        rq_affinity = %d.rq_affinity.map_or("unknown".into(), |a| a.to_string()),
        "the spool's disk takes its interrupts on these CPUs only: {effect}"
    );
}

/// [`disk_interrupt_cpus`], reading `sys/` and `proc/` under `root`.
fn under_root(path: &Path, root: &Path) -> Option<DiskIrqs> {
    let st = rustix::fs::stat(path).ok()?;
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let block = std::fs::canonicalize(root.join(format!("sys/dev/block/{major}:{minor}"))).ok()?;
    let device = block.file_name()?.to_str()?.to_owned();
    let devices = std::fs::canonicalize(root.join("sys/devices")).ok()?;
    let vectors = msi_vectors(&block, &devices)?;
    let counts = std::fs::read_to_string(root.join("proc/interrupts")).ok()?;
    let counted: Vec<(u32, u64)> = vectors
        .into_iter()
        .filter_map(|v| Some((v, interrupt_count(&counts, v)?)))
        .collect();
    let total: u64 = counted.iter().map(|(_, n)| n).sum();
    let fired: Vec<u32> = counted
        .into_iter()
        .filter(|&(_, n)| n > 0 && n.saturating_mul(100) >= total)
        .map(|(v, _)| v)
        .collect();
    let mut cpus = BTreeSet::new();
    for v in &fired {
        let irq = root.join(format!("proc/irq/{v}"));
        let list = std::fs::read_to_string(irq.join("effective_affinity_list"))
            .or_else(|_| std::fs::read_to_string(irq.join("smp_affinity_list")))
            .ok()?;
        cpus.extend(cpu_list(&list)?);
    }
    if cpus.is_empty() {
        return None;
    }
    Some(DiskIrqs {
        device,
        vectors: fired.len(),
        cpus: cpus.into_iter().collect(),
        rq_affinity: rq_affinity(&block),
    })
}

/// The `queue/rq_affinity` of the disk `block` is (a partition's is its
/// disk's, one directory up).
fn rq_affinity(block: &Path) -> Option<u8> {
    let read = |dir: &Path| std::fs::read_to_string(dir.join("queue/rq_affinity")).ok();
    let text = read(block).or_else(|| read(block.parent()?))?;
    text.trim().parse().ok()
}

/// The MSI vectors of the first device at or above `block` that has any
/// (the disk's controller), not looking above `devices`.
fn msi_vectors(block: &Path, devices: &Path) -> Option<Vec<u32>> {
    let mut at: PathBuf = block.to_path_buf();
    loop {
        if let Ok(entries) = std::fs::read_dir(at.join("msi_irqs")) {
            let mut v: Vec<u32> = entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            v.sort_unstable();
            return (!v.is_empty()).then_some(v);
        }
        if !at.pop() || !at.starts_with(devices) || at == devices {
            return None;
        }
    }
}

/// How many times interrupt `irq` fired, over all CPUs, per the text of
/// `/proc/interrupts`.
fn interrupt_count(interrupts: &str, irq: u32) -> Option<u64> {
    let label = format!("{irq}:");
    let line = interrupts
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    let mut sum = 0u64;
    for field in line.split_whitespace().skip(1) {
        match field.parse::<u64>() {
            Ok(n) => sum += n,
            // The per-CPU counts end where the controller's name begins.
            Err(_) => break,
        }
    }
    Some(sum)
}

/// A kernel CPU list (`0-3,8,10-11`).
fn cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("1\n"), Some(vec![1]));
        assert_eq!(cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("x"), None);
    }

    #[test]
    fn interrupt_counts_sum_the_cpus_and_stop_at_the_name() {
        let text = "           CPU0       CPU1\n \
                    35:          0          1  PCI-MSIX-0000:00:02.0   0-edge      virtio1-config\n \
                    36:         10     880750  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
                    NMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(interrupt_count(text, 36), Some(880_760));
        assert_eq!(interrupt_count(text, 35), Some(1));
        assert_eq!(interrupt_count(text, 3), None);
    }

    /// A sysfs and procfs laid out as a virtio disk's are, under a temporary
    /// root, for the device the test directory itself is on: its block
    /// device links to a controller with two vectors, of which one took
    /// nearly all the interrupts.
    #[test]
    fn a_paths_device_is_followed_to_its_controllers_vectors_and_their_cpus() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let st = rustix::fs::stat(r).expect("stat");
        let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
        let pci = r.join("sys/devices/pci0000:00/0000:00:02.0");
        let block = pci.join("virtio1/block/vda");
        std::fs::create_dir_all(block.join("queue")).expect("block");
        std::fs::write(block.join("queue/rq_affinity"), "1\n").expect("rq_affinity");
        std::fs::create_dir_all(pci.join("msi_irqs/35")).expect("vector 35");
        std::fs::create_dir_all(pci.join("msi_irqs/36")).expect("vector 36");
        std::fs::create_dir_all(r.join("sys/dev/block")).expect("dev/block");
        symlink(
            "../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
            r.join(format!("sys/dev/block/{major}:{minor}")),
        )
        .expect("symlink");
        std::fs::create_dir_all(r.join("proc/irq/35")).expect("irq 35");
        std::fs::create_dir_all(r.join("proc/irq/36")).expect("irq 36");
        // The configuration vector fired once, on CPU 0: too rarely to count.
        std::fs::write(r.join("proc/irq/35/effective_affinity_list"), "0\n").expect("35");
        std::fs::write(r.join("proc/irq/36/effective_affinity_list"), "1\n").expect("36");
        std::fs::write(
            r.join("proc/interrupts"),
            "     CPU0 CPU1\n 35: 1 0 PCI-MSIX virtio1-config\n 36: 4 9000 PCI-MSIX virtio1-req.0\n",
        )
        .expect("interrupts");
        assert_eq!(
            under_root(r, r),
            Some(DiskIrqs {
                device: "vda".into(),
                vectors: 1,
                cpus: vec![1],
                rq_affinity: Some(1),
            })
        );
        // A partition's queue is its disk's.
        let part = block.join("vda1");
        std::fs::create_dir_all(&part).expect("partition");
        assert_eq!(rq_affinity(&part), Some(1));
        std::fs::write(block.join("queue/rq_affinity"), "2\n").expect("rq_affinity");
        assert_eq!(rq_affinity(&part), Some(2));
        // A device with no controller vectors above it (a loop or
        // device-mapper device) gives no answer.
        std::fs::remove_dir_all(pci.join("msi_irqs")).expect("remove vectors");
        assert_eq!(under_root(r, r), None);
    }
}
