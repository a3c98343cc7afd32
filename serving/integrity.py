"""Is an uploaded audio file complete? Truncated WAV and OGG files decode without an error in
libsndfile (it serves whatever is there), so their framing is checked here before decoding.

* WAV (RIFF, RF64): the ``data`` chunk must hold as many bytes as its header declares (a size of 0 or
  0xFFFFFFFF means "unknown", as written by streaming encoders, and is not checked);
* OGG: every page must be complete and every logical stream must end with its end-of-stream page.

FLAC needs no check here: libsndfile refuses a cut FLAC stream ("lost sync").
"""

from __future__ import annotations

import struct

UNKNOWN_SIZES = (0, 0xFFFFFFFF)
OGG_EOS = 0x04  # header_type flag of the last page of a logical stream
OGG_HEADER = 27  # fixed part of an Ogg page header, before the segment table


class TruncatedAudioError(ValueError):
    """The file's own framing says bytes are missing; ``str(err)`` is a user-facing message."""


def _wav_chunks(data: bytes) -> tuple[dict[bytes, tuple[int, int]], int | None]:
    """``{chunk id: (payload offset, declared size)}`` of a RIFF/RF64 file, and RF64's data size."""
    chunks: dict[bytes, tuple[int, int]] = {}
    rf64_data_size: int | None = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        chunks.setdefault(cid, (pos + 8, size))
        if cid == b"ds64" and pos + 8 + 16 <= len(data):
            rf64_data_size = struct.unpack_from("<Q", data, pos + 8 + 8)[0]
        if cid == b"data":
            break  # what follows is audio
        pos += 8 + size + (size & 1)
    return chunks, rf64_data_size


def check_wav(data: bytes) -> None:
    """Raise :class:`TruncatedAudioError` if the WAV's data chunk is shorter than declared."""
    if data[:4] not in (b"RIFF", b"RF64", b"BW64") or data[8:12] != b"WAVE":
        return
    chunks, rf64_size = _wav_chunks(data)
    if b"data" not in chunks:
        return  # no data chunk at all: the decoder reports it
    offset, declared = chunks[b"data"]
    if data[:4] != b"RIFF" and declared == 0xFFFFFFFF and rf64_size is not None:
        declared = rf64_size
    elif declared in UNKNOWN_SIZES:
        return
    present = len(data) - offset
    if present >= declared:
        return
    byte_rate = 0
    if b"fmt " in chunks and chunks[b"fmt "][0] + 12 <= len(data):
        byte_rate = struct.unpack_from("<I", data, chunks[b"fmt "][0] + 8)[0]
    if byte_rate > 0:
        detail = (
            f"its header declares {declared / byte_rate:.2f} s of audio ({declared} bytes), "
            f"only {present / byte_rate:.2f} s ({present} bytes)"
        )
    else:
        detail = f"its header declares {declared} bytes of audio, only {present}"
    raise TruncatedAudioError(f"truncated WAV file: {detail} are present (upload cut short?)")


def check_ogg(data: bytes) -> None:
    """Raise :class:`TruncatedAudioError` if an Ogg stream is cut mid-page or has no last page."""
    if data[:4] != b"OggS":
        return
    pos, open_streams = 0, set()
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS":
            return  # not Ogg framing past here: the decoder decides
        if pos + OGG_HEADER > len(data):
            break
        flags, serial = data[pos + 5], struct.unpack_from("<I", data, pos + 14)[0]
        nsegs = data[pos + 26]
        table_end = pos + OGG_HEADER + nsegs
        if table_end > len(data):
            break
        end = table_end + sum(data[pos + OGG_HEADER : table_end])
        if end > len(data):
            break
        if flags & OGG_EOS:
            open_streams.discard(serial)
        else:
            open_streams.add(serial)
        pos = end
    else:
        if not open_streams:
            return
        raise TruncatedAudioError(
            "truncated OGG file: the stream ends without its end-of-stream page (upload cut short?)"
        )
    raise TruncatedAudioError(f"truncated OGG file: it ends in the middle of a page at byte {len(data)}")


def check_complete(data: bytes) -> None:
    """Raise :class:`TruncatedAudioError` if ``data`` is a WAV or OGG file with bytes missing."""
    check_wav(data)
    check_ogg(data)
