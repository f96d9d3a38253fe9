use clap::Parser;

/// Downloads, checksums and lays out the datasets (Digits, Office-31, Office-Home, VisDA-2017,
/// DomainNet) and the pretrained weights the suite trains from.
#[derive(Parser)]
#[command(name = "data-fetch", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("data-fetch: no subcommands yet");
    std::process::exit(2);
}
