//! Chat templates for model files that carry none (`tokenizer.chat_template` absent), picked
//! by architecture, as llama.cpp and Ollama fall back to known formats. Each is written from
//! the model family's documented turn format.

/// Gemma: `<start_of_turn>user … <end_of_turn>` turns, the assistant's role named `model`;
/// Gemma has no system role, so a system message is prepended to the first user turn.
const GEMMA: &str = r#"{{ bos_token }}
{%- set ns = namespace(system='') -%}
{%- for m in messages -%}
{%- if m['role'] == 'system' -%}
{%- set ns.system = ns.system ~ m['content'] ~ '\n\n' -%}
{%- else -%}
{%- set role = 'model' if m['role'] == 'assistant' else 'user' -%}
<start_of_turn>{{ role }}
{{ ns.system if role == 'user' else '' }}{{ m['content'] | trim }}<end_of_turn>
{% if role == 'user' %}{% set ns.system = '' %}{% endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<start_of_turn>model
{% endif -%}"#;

/// ChatML (`<|im_start|>role … <|im_end|>`), llama.cpp's default when a file has no template.
const CHATML: &str = r#"{%- for m in messages -%}
<|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}"#;

/// The fallback template for `architecture`.
pub fn builtin_template(architecture: &str) -> &'static str {
    match architecture {
        a if a.starts_with("gemma") => GEMMA,
        _ => CHATML,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatTemplate;
    use serde_json::json;

    #[test]
    fn gemma_turns_follow_the_documented_format() {
        let t = ChatTemplate::new(builtin_template("gemma3"), "<bos>", "<eos>").unwrap();
        let msgs = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}
        ]);
        assert_eq!(
            t.render(&msgs, None, true).unwrap(),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n\
             <start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn chatml_is_the_default() {
        let t = ChatTemplate::new(builtin_template("mystery"), "", "").unwrap();
        let msgs = json!([{"role": "user", "content": "Hi"}]);
        assert_eq!(
            t.render(&msgs, None, true).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&msgs, None, false).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n"
        );
    }
}
