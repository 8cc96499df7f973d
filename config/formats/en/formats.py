"""Herald's one way of writing dates and times, everywhere: 30 Nov 2026, 05:43.

Django's English locale would otherwise write its own readonly fields and lists as
"Nov. 30, 2026, 5:43 a.m." beside Herald's own "30 Nov 2026, 05:43".
"""

DATE_FORMAT = SHORT_DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = SHORT_DATETIME_FORMAT = "j M Y, H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1  # Monday
