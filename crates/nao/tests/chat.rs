//! `nao chat` driven through a pseudo-terminal (Python's `pty` module plays the user):
//! a `/set` command, an answer stopped with Ctrl-C that returns to the prompt, a
//! multi-line `"""` message answered with a tokens/s line, `/save`, and `/bye`.
//! Needs the Gemma test model (`scripts/fetch_models.py gemma`); skipped without it.

use std::path::PathBuf;
use std::process::Command;

const DRIVER: &str = r#"
import os, pty, sys, time, json, select
nao, model, home, save = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.environ["NAO_HOME"] = home
    os.execv(nao, [nao, "chat", model, "--ctx", "2048", "-n", "1500", "--temp", "0", "-t", "2"])
buf = b""
def read_until(needle, timeout):
    global buf
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if needle.encode() in buf:
                return True
    return needle.encode() in buf
def send(s):
    os.write(fd, s.encode())
res = {}
def read_until_after(needle, start, timeout):
    end = time.time() + timeout
    while time.time() < end and needle.encode() not in buf[start:]:
        read_until("\x00", 0.2)
    return needle.encode() in buf[start:]
res["prompt"] = read_until(">>> ", 120)
send("/set temperature 0\r")
res["set"] = read_until("temperature = 0", 10)
mark = len(buf)
send("Count from 1 to 300, separated by commas.\r")
# Let the answer stream a little (the base model's words, whatever they are), then
# interrupt it long before its 1500-token limit.
end = time.time() + 120
while time.time() < end and len(buf) - mark < 120:
    read_until("\x00", 0.2)
send("\x03")
res["stopped"] = read_until_after("[stopped:", mark, 60)
res["back_at_prompt"] = read_until_after(">>> ", max(buf.find(b"[stopped:"), 0), 30)
mark = len(buf)
send("/set max_tokens 24\r")
read_until_after("max_tokens = 24", mark, 10)
read_until_after(">>> ", len(buf) - 4, 10)
# rustyline flushes typed-ahead input when it enters raw mode: wait for each prompt.
def send_after_prompt(text, prompt):
    start = len(buf)
    end = time.time() + 10
    while time.time() < end and prompt.encode() not in buf[max(start - 8, 0):]:
        read_until("\x00", 0.1)
    send(text)
mark = len(buf)
send('"""\r')
send_after_prompt("Say hello\r", "... ")
send_after_prompt('to me."""\r', "... ")
res["multiline_answer"] = read_until_after("tok/s", mark, 120)
mark = len(buf)
read_until_after(">>> ", mark - 8, 10)
send("/save " + save + "\r")
res["saved"] = read_until_after("saved", mark, 10)
read_until_after(">>> ", mark, 10)
send("/bye\r")
status = None
end = time.time() + 30
while status is None and time.time() < end:
    read_until("\x00", 0.2)
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        status = os.waitstatus_to_exitcode(st)
if status is None:
    os.kill(pid, 9)
res["exit"] = status
res["transcript"] = buf.decode("utf-8", "replace")[-3000:]
print(json.dumps(res))
"#;

#[test]
fn chat_through_a_terminal() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("models/gemma-3-270m-q4_k_m.gguf");
    if !model.exists() {
        eprintln!("skipped: {} not present", model.display());
        return;
    }
    let dir = std::env::temp_dir().join(format!("nao-chat-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let save = dir.join("chat.json");
    let out = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(env!("CARGO_BIN_EXE_nao"))
        .arg(&model)
        .arg(dir.join("home"))
        .arg(&save)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let res: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "driver output: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    for key in [
        "prompt",
        "set",
        "stopped",
        "back_at_prompt",
        "multiline_answer",
        "saved",
    ] {
        assert_eq!(res[key], true, "{key}: {res}");
    }
    assert_eq!(res["exit"], 0, "{res}");
    // The saved conversation: both user turns, the multi-line one joined with a newline.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&save).expect("saved file")).expect("JSON");
    let msgs = doc["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 4, "{doc}");
    assert_eq!(
        msgs[0]["content"],
        "Count from 1 to 300, separated by commas."
    );
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[2]["content"], "Say hello\nto me.");
    assert_eq!(doc["temperature"], 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}
