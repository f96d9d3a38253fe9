use clap::Parser;

/// Aggregates run records over seeds into LaTeX tables in the paper's layout and charts.
#[derive(Parser)]
#[command(name = "report", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("report: no subcommands yet");
    std::process::exit(2);
}
