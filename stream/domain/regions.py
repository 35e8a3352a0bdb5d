"""The 18 regions since 2016 (INSEE codes) and the region of each department code of the ministry files.

Mainland and Corsica use the INSEE department codes ("01".."95", "2A", "2B"); the five overseas
departments that are also regions use the ministry's letter codes (ZA Guadeloupe = region 01, ZB
Martinique = 02, ZC Guyane = 03, ZD La Réunion = 04, ZM Mayotte = 06). The overseas collectivities
(ZN, ZP, ZS, ZW, ZX) and the French abroad (ZZ) belong to no region: absent from the map.
"""

from __future__ import annotations

__all__ = ["REGION_NAMES", "REGION_OF_DEPARTMENT", "region_of"]

#: INSEE region code -> name, the 18 regions since 1 January 2016.
REGION_NAMES: dict[str, str] = {
    "11": "Île-de-France",
    "24": "Centre-Val de Loire",
    "27": "Bourgogne-Franche-Comté",
    "28": "Normandie",
    "32": "Hauts-de-France",
    "44": "Grand Est",
    "52": "Pays de la Loire",
    "53": "Bretagne",
    "75": "Nouvelle-Aquitaine",
    "76": "Occitanie",
    "84": "Auvergne-Rhône-Alpes",
    "93": "Provence-Alpes-Côte d'Azur",
    "94": "Corse",
    "01": "Guadeloupe",
    "02": "Martinique",
    "03": "Guyane",
    "04": "La Réunion",
    "06": "Mayotte",
}

_DEPARTMENTS_OF_REGION: dict[str, tuple[str, ...]] = {
    "11": ("75", "77", "78", "91", "92", "93", "94", "95"),
    "24": ("18", "28", "36", "37", "41", "45"),
    "27": ("21", "25", "39", "58", "70", "71", "89", "90"),
    "28": ("14", "27", "50", "61", "76"),
    "32": ("02", "59", "60", "62", "80"),
    "44": ("08", "10", "51", "52", "54", "55", "57", "67", "68", "88"),
    "52": ("44", "49", "53", "72", "85"),
    "53": ("22", "29", "35", "56"),
    "75": ("16", "17", "19", "23", "24", "33", "40", "47", "64", "79", "86", "87"),
    "76": ("09", "11", "12", "30", "31", "32", "34", "46", "48", "65", "66", "81", "82"),
    "84": ("01", "03", "07", "15", "26", "38", "42", "43", "63", "69", "73", "74"),
    "93": ("04", "05", "06", "13", "83", "84"),
    "94": ("2A", "2B"),
    "01": ("ZA",),
    "02": ("ZB",),
    "03": ("ZC",),
    "04": ("ZD",),
    "06": ("ZM",),
}

#: Department code (as in the ministry files) -> INSEE region code; 101 departments.
REGION_OF_DEPARTMENT: dict[str, str] = {
    department: region for region, departments in _DEPARTMENTS_OF_REGION.items() for department in departments
}


def region_of(department: str) -> str | None:
    """The INSEE code of the department's region; ``None`` for ZN, ZP, ZS, ZW, ZX, ZZ and unknown codes."""
    return REGION_OF_DEPARTMENT.get(department)
