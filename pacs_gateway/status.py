"""Every DIMSE and association status the gateway answers with, in one place.

Storage statuses follow PS3.4 Annex B.2.3: 0xA7xx "Refused: Out of Resources",
0xA9xx "Error: Data Set Does Not Match SOP Class", 0xCxxx "Error: Cannot Understand".
"""

SUCCESS = 0x0000

# Refused: out of resources (the bytes could not be made durable or indexed)
OUT_OF_RESOURCES_WRITE = 0xA700
OUT_OF_RESOURCES_INDEX = 0xA701
OUT_OF_RESOURCES_DISK_FULL = 0xA702

# Error: data set does not match SOP class
SOP_CLASS_MISMATCH = 0xA900

# Error: cannot understand
CANNOT_PARSE = 0xC210  # header undecodable
TRUNCATED = 0xC211  # element values run past the end of the received data
MISSING_UID = 0xC212  # Study, Series or SOP Instance UID missing or invalid
INSTANCE_MISMATCH = 0xC213  # SOP Instance UID in the data set differs from the command's

DESCRIPTIONS = {
    SUCCESS: "success",
    OUT_OF_RESOURCES_WRITE: "refused: out of resources (write failed)",
    OUT_OF_RESOURCES_INDEX: "refused: out of resources (index failed)",
    OUT_OF_RESOURCES_DISK_FULL: "refused: out of resources (disk above high-water mark)",
    SOP_CLASS_MISMATCH: "error: data set does not match SOP class",
    CANNOT_PARSE: "error: cannot understand (header cannot be parsed)",
    TRUNCATED: "error: cannot understand (data set truncated)",
    MISSING_UID: "error: cannot understand (required UID missing)",
    INSTANCE_MISMATCH: "error: cannot understand (SOP Instance UID differs from the command)",
}

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # rejected-permanent, service-user, calling AE not recognised
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # rejected-permanent, service-user, called AE not recognised
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # rejected-transient, service-provider (presentation), local limit exceeded


def describe(status: int) -> str:
    return DESCRIPTIONS.get(status, f"status 0x{status:04X}")
