//! The pages embed hls.js from its npm package (pinned in player/package.json and installed by
//! scripts/setup.sh), so the binary serves it itself and no page loads code from a CDN.

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("player/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed={}", path.display());
    if !path.exists() {
        panic!(
            "hls.js is missing at {}: run scripts/setup.sh (or `npm ci` in web-demo/player)",
            path.display()
        );
    }
    // The served file name carries the version, so it can be cached as immutable.
    let manifest = path
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("package.json"));
    let text = manifest
        .and_then(|m| std::fs::read_to_string(m).ok())
        .unwrap_or_default();
    let version = text
        .split("\"version\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .expect("hls.js package.json has a version");
    println!("cargo:rustc-env=HLS_JS_VERSION={version}");
}
