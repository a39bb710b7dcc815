"""DICOM adapter: the C-STORE SCP, header facts and TID 1500 parsing — untrusted bytes in, facts out."""

from pydicom import config as _pydicom_config

# pydicom validates values while it reads them and by default only warns, quoting the offending value in the
# warning and in its "pydicom" log record. Every value we read comes from outside and may be a patient's name or
# ID (or, from a fuzzer, kilobytes of binary), so that would put PHI into our logs. What we use we check
# ourselves (headers._identifying, tid1500.reader) and report without the value; pydicom's read-time check adds
# nothing but the leak.
_pydicom_config.settings.reading_validation_mode = _pydicom_config.IGNORE
