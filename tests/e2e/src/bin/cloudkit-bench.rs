#![forbid(unsafe_code)]
//! `cloudkit-bench [--out FILE] [--label TEXT] [--idle SECS] [--resync SECS] [--probes K] [--kinds LIST] N...`
//!
//! The scale benchmark (issue 14), once per N: N objects (Buckets; `--kinds all` or e.g.
//! `--kinds bucket,queue` for a mix, made in turn) created against the cluster in
//! KUBECONFIG and the S3 endpoint in CLOUDKIT_AWS_ENDPOINT, reconciled by the controller
//! binary CLOUDKIT_BIN (build it with `--release` for figures worth comparing), then left
//! quiet, probed with new objects, and deleted. Prints a markdown section and appends it to
//! FILE. `scripts/bench.sh scale N...` sets everything up.

use std::io::Write;
use std::time::Duration;

use cloudkit_e2e::bench::{self, BenchKind, Figures, Options};

fn usage() -> ! {
    eprintln!(
        "usage: cloudkit-bench [--out FILE] [--label TEXT] [--idle SECS] [--resync SECS] [--probes K] \
         [--kinds all|bucket,queue,topic,table,function] N..."
    );
    std::process::exit(2);
}

fn number<T: std::str::FromStr>(text: Option<String>) -> T {
    text.and_then(|t| t.parse().ok()).unwrap_or_else(|| usage())
}

/// What the figures were measured on, for the section's header.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}

fn parse_kinds(text: &str) -> Vec<BenchKind> {
    if text == "all" {
        return BenchKind::ALL.to_vec();
    }
    text.split(',')
        .map(|k| BenchKind::parse(k.trim()).unwrap_or_else(|| usage()))
        .collect()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut out, mut label) = (None, String::new());
    let (mut idle, mut resync, mut probes) = (60u64, 60u64, 20usize);
    let mut sizes = Vec::new();
    let mut kinds = vec![BenchKind::Bucket];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = Some(args.next().unwrap_or_else(|| usage())),
            "--label" => label = args.next().unwrap_or_else(|| usage()),
            "--idle" => idle = number(args.next()),
            "--resync" => resync = number(args.next()),
            "--probes" => probes = number(args.next()),
            "--kinds" => kinds = parse_kinds(&args.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            n => sizes.push(number::<usize>(Some(n.to_owned()))),
        }
    }
    if sizes.is_empty() {
        usage();
    }
    let bin = std::env::var("CLOUDKIT_BIN").unwrap_or_default();
    let build = if bin.contains("release") {
        "release"
    } else {
        "debug (?)"
    };
    let mut section = format!(
        "\n### {} — {}\n\n{}; controller `{}` build ({bin}); resyncInterval {resync}s, idle window {idle}s, \
         {probes} probes; load average sampled at start · all Ready · end of each run (the machine is shared: \
         other builds and tests ran alongside).\n\n{}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if label.is_empty() { "run" } else { &label },
        machine(),
        build,
        Figures::header(),
    );
    let mut notes = Vec::new();
    for n in sizes {
        let mut opts = Options::new(n);
        opts.idle = Duration::from_secs(idle);
        opts.resync = Duration::from_secs(resync);
        opts.probes = probes;
        opts.kinds = kinds.clone();
        eprintln!("cloudkit-bench: N={n} …");
        let f = bench::run(&opts).await;
        println!("{}", f.row());
        eprintln!("{}", f.requests());
        section.push_str(&f.row());
        section.push('\n');
        notes.push(f.requests());
    }
    section.push_str("\nKubernetes requests (kube-apiserver's apiserver_request_total; the bench's own creates, deletes and watch included):\n\n");
    for note in notes {
        section.push_str(&format!("- {note}\n"));
    }
    print!("{section}");
    if let Some(path) = out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        file.write_all(section.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("cloudkit-bench: appended to {path}");
    }
}
