"""What one request to ``formers serve`` may ask for, and how a refusal is signalled.

A request beyond a limit is refused with a 4xx status, never truncated: :class:`RequestError`
carries the status the HTTP layer answers with (400 for a value outside the option's own range,
:data:`formers.decoding.options.RANGES`; 413 for more than one of these limits allows; 404 for a
task the model does not do).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from formers.decoding.options import check_option


class RequestError(ValueError):
    """A request the service refuses; ``status`` is the HTTP status code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; more is refused with a 4xx status, never truncated.

    Attributes:
        max_chars: characters in one text.
        max_tokens: tokens in one text (also capped by the positions the model has).
        max_batch: texts in one request.
        max_new_tokens: tokens one ``/generate`` request may produce.
        max_beam: the widest beam one ``/translate`` request may use.
    """

    max_chars: int = 1000
    max_tokens: int = 256
    max_batch: int = 32
    max_new_tokens: int = 256
    max_beam: int = 8

    def __post_init__(self) -> None:
        bad = [f"{name}={value!r}" for name, value in asdict(self).items() if value < 1]
        if bad:
            raise ValueError(f"limits must be >= 1: {', '.join(bad)}")
        # no higher than any search takes (formers.decoding.options)
        check_option("beam", self.max_beam, label="max_beam")
        check_option("max_new_tokens", self.max_new_tokens, label="max_new_tokens")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
