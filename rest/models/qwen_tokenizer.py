"""The Qwen3 tokenizer, built offline from the `qwen.tiktoken` file that ships inside PyPI `dashscope`.

Why: model hubs are unreachable on our CPU machines, but Qwen's byte-level BPE vocabulary (151,643 ranks,
shared by Qwen2/2.5/3) is on PyPI. A tiktoken file holds only ranks, so we rebuild what a Hugging Face
`tokenizer.json` needs: the byte-level vocabulary, the merges (recovered from the ranks), Qwen's split regex,
NFC, and Qwen3's 26 added tokens with their real ids. The result reproduces Qwen3's ids
("Hello, world!" -> 9707, 11, 1879, 0), so a tiny random Qwen3 speaks the same token language as the real one.
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from rest.byte_level import bytes_to_unicode

# Qwen2/2.5/3's pre-tokenizer split (the same pattern their tokenizer.json carries).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_RANKS = 151_643
# What `save_qwen3_tokenizer` writes (transformers 5 keeps the chat template in its own file).
QWEN3_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

# Qwen3's added tokens, in id order from 151643. `special` follows Qwen3's tokenizer_config.json: the tool and
# think tags are *not* special, so `decode(..., skip_special_tokens=True)` keeps them (the reward and the
# tool-call parser need to see them).
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),  # 151643
    ("<|im_start|>", True),  # 151644
    ("<|im_end|>", True),  # 151645
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),  # 151656
    ("<tool_call>", False),  # 151657
    ("</tool_call>", False),  # 151658
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),  # 151664
    ("<tool_response>", False),  # 151665
    ("</tool_response>", False),  # 151666
    ("<think>", False),  # 151667
    ("</think>", False),  # 151668
)

# ChatML with tools, in Qwen3's format (tools as JSON lines inside <tools></tools> in the system turn, calls as
# <tool_call>{json}</tool_call>, tool results as <tool_response> blocks inside one user turn). Unlike Qwen3's own
# template it neither inserts nor strips <think> blocks: assistant content is rendered verbatim, so the tokens a
# policy generated are exactly the tokens it is trained on.
QWEN3_CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- set content = message.content if message.content is string else '' %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + content }}"
    "{%- if message.tool_calls %}{%- for tool_call in message.tool_calls %}"
    "{%- if (loop.first and content) or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}"
    "{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def find_qwen_tiktoken_file() -> Path:
    """Path of `qwen.tiktoken` inside the installed `dashscope` package (found without importing it)."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PyPI package `dashscope`, which ships qwen.tiktoken, is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed dashscope package")
    return path


def load_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken BPE file: one `base64(token_bytes) rank` per line."""
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def recover_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The BPE merge list implied by tiktoken ranks, one merge per multi-byte token, in rank order.

    tiktoken has no merge list: it repeatedly joins the adjacent pair whose concatenation has the lowest rank.
    The merge that creates token T is therefore the last step of that procedure run on T's own bytes with only
    the ranks below rank(T) available. This gives exactly len(ranks) - 256 merges (151,387 for Qwen, the size of
    the merge list in Qwen's published tokenizer.json), and a BPE with this list encodes as tiktoken does.
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_rank, best_i = None, -1
            for i in range(len(parts) - 1):
                pair_rank = ranks.get(parts[i] + parts[i + 1])
                if pair_rank is not None and pair_rank < rank and (best_rank is None or pair_rank < best_rank):
                    best_rank, best_i = pair_rank, i
            if best_rank is None:
                raise ValueError(f"token of rank {rank} cannot be built from lower-ranked tokens")
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        merges.append((parts[0], parts[1]))
    return merges


def build_qwen3_backend_tokenizer(tiktoken_file: Path | None = None) -> Tokenizer:
    """A `tokenizers.Tokenizer` equal to Qwen3's tokenizer.json: byte-level BPE + split regex + NFC + added tokens."""
    ranks = load_tiktoken_ranks(tiktoken_file or find_qwen_tiktoken_file())
    if len(ranks) != NUM_RANKS:
        raise ValueError(f"expected {NUM_RANKS} ranks in qwen.tiktoken, found {len(ranks)}")
    byte_char = bytes_to_unicode()

    def to_str(token: bytes) -> str:
        return "".join(byte_char[b] for b in token)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    merges = [(to_str(left), to_str(right)) for left, right in recover_merges(ranks)]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    added = [AddedToken(text, special=special, normalized=False) for text, special in QWEN3_ADDED_TOKENS]
    tokenizer.add_tokens(added)  # ids follow the ranks in order: 151643, 151644, ...
    return tokenizer


def save_qwen3_tokenizer(out_dir: Path, tiktoken_file: Path | None = None) -> Path:
    """Write a transformers fast tokenizer (tokenizer.json, tokenizer_config.json, chat template) to `out_dir`."""
    from transformers import PreTrainedTokenizerFast

    backend = build_qwen3_backend_tokenizer(tiktoken_file)
    for offset, (text, _) in enumerate(QWEN3_ADDED_TOKENS):
        assert backend.token_to_id(text) == NUM_RANKS + offset, text
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=131_072,
        chat_template=QWEN3_CHAT_TEMPLATE,
        extra_special_tokens=[text for text, special in QWEN3_ADDED_TOKENS if special and text != "<|endoftext|>"],
    )
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    missing = [name for name in QWEN3_TOKENIZER_FILES if not (out_dir / name).is_file()]
    assert not missing, f"save_pretrained did not write {missing}"
    return out_dir
