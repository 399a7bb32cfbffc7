__version__ = "2.3.1"

FACTORS = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("m", "ft"): 3.28084}


def convert(value, src, dst):
    if (src, dst) == ("c", "f"):
        return value * 9 / 5 + 32
    if (src, dst) == ("f", "c"):
        return (value - 32) * 5 / 9
    return value * FACTORS[(src, dst)]
