//! Embeds the web UI (`ui/assets/`, `ui/pages/`) into the binary, in debug builds too, so that
//! what is served never depends on the source tree being next to the binary.

fn main() {
    // memory-serve reports each file it embeds as a cargo warning unless told to be quiet.
    std::env::set_var("MEMORY_SERVE_QUIET", "1");
    memory_serve::load_names_directories([("assets", "ui/assets"), ("pages", "ui/pages")], true);
}
