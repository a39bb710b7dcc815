"""Why an instance is not stored, in domain terms: the service raises these, the listener (``scp.refusal_status``)
alone turns each into its DIMSE status."""

from __future__ import annotations


class InstanceRefused(Exception):
    """The instance is not stored; ``comment`` says why (the sender sees it as the Error Comment)."""

    def __init__(self, comment: str) -> None:
        super().__init__(comment)
        self.comment = comment


class CannotUnderstand(InstanceRefused):
    """The object cannot be read, or a value of it cannot be stored."""


class NoPatient(InstanceRefused):
    """An image that does not identify its patient."""


class NotTID1500(InstanceRefused):
    """The object claims to be a TID 1500 report but cannot be read as one."""


class Implausible(InstanceRefused):
    """An implausible header date, or an SR none of whose measurement groups is plausible (contract §9.2)."""


class IdentityConflict(InstanceRefused):
    """The instance contradicts what is known of its identity (SOP Instance UID, the study's patient)."""


class StorageUnavailable(InstanceRefused):
    """Storage is temporarily unavailable (database down or locked): the sender should retry."""
