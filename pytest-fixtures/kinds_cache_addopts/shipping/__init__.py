RATES = {"standard": 4.90, "express": 12.50}


def quote(weight_kg: float, speed: str = "standard") -> float:
    if weight_kg <= 0:
        raise ValueError("weight must be positive")
    return round(RATES[speed] + 1.10 * max(0.0, weight_kg - 1.0), 2)
