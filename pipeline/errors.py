"""One error hierarchy for Teilhabe; every message says what to do."""


class TeilhabeError(Exception):
    """Base class of all Teilhabe errors."""


class ConfigError(TeilhabeError):
    """Invalid or missing configuration; the message names the TEILHABE_ variable."""


class BrokerError(TeilhabeError):
    """The Kafka broker (embedded or configured) cannot be reached or started."""


class SinkError(TeilhabeError):
    """ClickHouse rejected or could not take a write; the batch is kept and retried."""


class InvalidEvent(TeilhabeError):  # noqa: N818 - reads better at raise sites
    """An input message or event breaks the contract; ``reason`` is a stable short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
