"""Small clinical word tables for rule-based error synthesis, and content-word tokenisation.

The tables are hand-written for this project: drug classes (a factual swap stays within a class, so the
wrong drug is plausible), interchangeable tests, opposite condition pairs, unsupported add-ons
(hallucinations), and vague templates (unhelpful rewrites).
"""

from __future__ import annotations

import re

__all__ = [
    "ADDED_CONDITIONS",
    "ADDED_FINDINGS",
    "ADDED_PLANS",
    "DRUG_CLASSES",
    "OPPOSITES",
    "PAST_TENSE",
    "PLAN_VERBS",
    "STOP_WORDS",
    "SUBSTITUTES",
    "TEST_GROUPS",
    "TIMING_SWAPS",
    "VAGUE_HEADERS",
    "VAGUE_STEPS",
    "content_words",
    "step_kind",
    "step_prefix",
]

# Drugs grouped by class; swapping within a class gives a plausible but wrong drug.
DRUG_CLASSES: dict[str, tuple[str, ...]] = {
    "ace_inhibitor": ("lisinopril", "enalapril", "ramipril", "benazepril", "captopril"),
    "arb": ("losartan", "valsartan", "irbesartan", "olmesartan"),
    "beta_blocker": ("metoprolol", "atenolol", "carvedilol", "propranolol", "labetalol", "bisoprolol"),
    "calcium_blocker": ("amlodipine", "nifedipine", "diltiazem", "verapamil"),
    "diuretic": ("furosemide", "lasix", "hydrochlorothiazide", "spironolactone", "bumetanide", "torsemide"),
    "statin": ("atorvastatin", "simvastatin", "rosuvastatin", "pravastatin", "lovastatin"),
    "anticoagulant": ("warfarin", "coumadin", "apixaban", "eliquis", "rivaroxaban", "xarelto", "heparin"),
    "antiplatelet": ("aspirin", "clopidogrel", "plavix", "ticagrelor"),
    "penicillin": ("amoxicillin", "augmentin", "penicillin", "ampicillin", "dicloxacillin"),
    "antibiotic": ("azithromycin", "doxycycline", "ciprofloxacin", "levofloxacin", "cephalexin", "keflex",
                   "bactrim", "clindamycin", "ceftriaxone", "vancomycin", "nitrofurantoin", "metronidazole"),
    "ppi": ("omeprazole", "pantoprazole", "esomeprazole", "lansoprazole", "famotidine", "ranitidine"),
    "antidiabetic": ("metformin", "glipizide", "glyburide", "insulin", "januvia", "jardiance", "ozempic"),
    "steroid": ("prednisone", "dexamethasone", "methylprednisolone", "hydrocortisone", "prednisolone"),
    "inhaler": ("albuterol", "flovent", "fluticasone", "advair", "symbicort", "spiriva", "budesonide"),
    "analgesic": ("ibuprofen", "motrin", "naproxen", "acetaminophen", "tylenol", "meloxicam", "tramadol",
                  "oxycodone", "celecoxib"),
    "antidepressant": ("sertraline", "zoloft", "fluoxetine", "prozac", "citalopram", "escitalopram",
                       "lexapro", "bupropion", "wellbutrin", "venlafaxine", "duloxetine"),
    "benzodiazepine": ("lorazepam", "ativan", "alprazolam", "xanax", "diazepam", "clonazepam"),
    "antiepileptic": ("levetiracetam", "keppra", "lamotrigine", "phenytoin", "gabapentin", "topiramate",
                      "valproate"),
    "thyroid": ("levothyroxine", "synthroid", "methimazole", "propylthiouracil"),
    "antihistamine": ("cetirizine", "zyrtec", "loratadine", "claritin", "diphenhydramine", "benadryl"),
    "antiemetic": ("ondansetron", "zofran", "metoclopramide", "promethazine"),
}  # fmt: skip

# Tests that can stand in for one another in a plan.
TEST_GROUPS: tuple[tuple[str, ...], ...] = (
    ("ct scan", "mri", "ultrasound", "x-ray", "pet scan"),
    ("ekg", "echocardiogram", "stress test", "holter monitor"),
    ("cbc", "cmp", "bmp", "lipid panel", "hemoglobin a1c", "tsh"),
    ("colonoscopy", "endoscopy", "sigmoidoscopy"),
    ("biopsy", "fine needle aspiration"),
)

# Other interchangeable terms: a swap within a group gives a plausible but wrong fact.
SUBSTITUTES: tuple[tuple[str, ...], ...] = (
    ("cardiology", "neurology", "rheumatology", "dermatology", "gastroenterology", "urology", "orthopedics",
     "psychiatry", "pulmonology", "nephrology", "endocrinology", "oncology", "physical therapy"),
    ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"), ("hips", "knees", "ankles", "shoulders", "elbows"),
    ("chest", "abdomen", "back", "neck"), ("arm", "leg"), ("hand", "foot"), ("finger", "toe"),
    ("fever", "chills", "fatigue"), ("nausea", "vomiting", "diarrhea", "constipation"),
    ("cough", "wheezing", "shortness of breath", "chest pain"), ("headache", "dizziness", "blurred vision"),
    ("kidney", "liver", "lung"), ("uti", "pneumonia", "cellulitis"),
)  # fmt: skip
# Past-tense verbs and their base form, to negate a finding ("showed" -> "did not show").
PAST_TENSE: dict[str, str] = {
    "presented": "present", "revealed": "reveal", "showed": "show", "reported": "report",
    "demonstrated": "demonstrate", "developed": "develop", "experienced": "experience", "noticed": "notice",
    "underwent": "undergo", "received": "receive", "took": "take", "suggested": "suggest",
    "complained": "complain", "started": "start", "stopped": "stop", "tried": "try", "used": "use",
}  # fmt: skip

# Word pairs whose swap inverts a fact (each direction is used).
OPPOSITES: tuple[tuple[str, str], ...] = (
    ("left", "right"), ("bilateral", "unilateral"), ("bilaterally", "unilaterally"), ("upper", "lower"),
    ("hypertension", "hypotension"), ("hyperthyroidism", "hypothyroidism"), ("hyperglycemia", "hypoglycemia"),
    ("hyperkalemia", "hypokalemia"), ("hypernatremia", "hyponatremia"), ("tachycardia", "bradycardia"),
    ("atrial fibrillation", "atrial flutter"), ("type 1", "type 2"), ("acute", "chronic"), ("mild", "severe"),
    ("improved", "worsened"), ("improving", "worsening"), ("increase", "decrease"), ("increased", "decreased"),
    ("elevated", "low"), ("high", "low"), ("positive", "negative"), ("normal", "abnormal"),
    ("benign", "malignant"), ("start", "stop"), ("continue", "discontinue"), ("stable", "unstable"),
    ("controlled", "uncontrolled"), ("systolic", "diastolic"), ("anterior", "posterior"),
    ("proximal", "distal"), ("medial", "lateral"), ("inpatient", "outpatient"),
)  # fmt: skip

# Timing and frequency expressions swapped for a neighbouring one.
TIMING_SWAPS: tuple[tuple[str, str], ...] = (
    ("twice daily", "once daily"), ("twice a day", "once a day"), ("three times a day", "twice a day"),
    ("once a day", "twice a day"), ("once daily", "twice daily"), ("daily", "twice daily"),
    ("weekly", "monthly"), ("monthly", "weekly"), ("every day", "every other day"),
    ("days", "weeks"), ("weeks", "months"), ("months", "weeks"), ("day", "week"), ("week", "month"),
    ("month", "year"), ("year", "month"), ("morning", "evening"), ("evening", "morning"),
    ("at night", "in the morning"), ("yesterday", "two days ago"), ("today", "yesterday"),
    ("bid", "tid"), ("tid", "qid"), ("prn", "daily"),
)  # fmt: skip

# Add-ons for hallucinations (checked against the dialogue before use).
ADDED_PLANS: tuple[str, ...] = (
    "start {drug} daily", "order a {test}", "refer to cardiology", "refer to physical therapy",
    "schedule a {test} next week", "start {drug} 10 mg twice daily", "check a {test} in two weeks",
    "refer to a dietitian", "recommend a sleep study", "begin a course of {drug}",
)  # fmt: skip
ADDED_FINDINGS: tuple[str, ...] = (
    "with rales", "with a grade 2/6 systolic murmur", "with trace pedal edema", "with mild hepatomegaly",
    "with a low-grade fever", "with a positive Babinski sign", "with decreased breath sounds on the left",
    "with elevated troponin", "with a history of smoking", "with a family history of colon cancer",
    "with weight loss of 10 pounds", "with an elevated white count", "with right lower quadrant tenderness",
)  # fmt: skip
ADDED_CONDITIONS: tuple[str, ...] = (
    "Hypertension", "Type 2 diabetes mellitus", "Atrial fibrillation", "Hypothyroidism", "Chronic kidney disease",
    "Gout", "Migraine", "Obstructive sleep apnea", "Hyperlipidemia", "Anemia", "Osteoporosis", "Depression",
    "Gastroesophageal reflux disease", "Asthma", "Urinary tract infection", "Peripheral neuropathy",
    "Pneumonia", "Allergic rhinitis", "Psoriasis", "Glaucoma",
)  # fmt: skip

# Vague rewrites (unhelpful), by the step's prefix ("plan:", "assessment:") or, without one, by its kind.
VAGUE_STEPS: dict[str, tuple[str, ...]] = {
    "plan:": ("Plan: Continue medication.", "Plan: Continue current management.", "Plan: Will do some tests.",
              "Plan: Follow up as needed.", "Plan: Monitor.", "Plan: Schedule a follow-up.",
              "Plan: Treat as appropriate.", "Plan: Continue meds."),
    "assessment:": ("Assessment: Condition noted.", "Assessment: Patient is doing okay.",
                    "Assessment: Some symptoms present.", "Assessment: Stable overall.",
                    "Assessment: Patient has a medical issue.", "Assessment: The patient's condition is noted."),
    "plan": ("Follow up as needed.", "Continue current treatment.", "Will monitor.", "Patient to call if needed.",
             "Come back sometime.", "Continue medication.", "Will do some tests.", "Take medicine as directed."),
    "assessment": ("Some symptoms present.", "Condition noted.", "Exam was done.", "Patient has a medical issue.",
                   "Discussed with patient.", "Things are about the same.", "Some findings noted."),
}  # fmt: skip
# Vague headers by organ keyword; the first matching keyword wins, "" is the default.
VAGUE_HEADERS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("follow",), ("Next steps", "Follow-up", "Things to do later", "Other")),
    (("heart", "cardi", "atrial", "coronary", "angina", "murmur", "valve"), ("Heart problem", "Cardiac issue")),
    (("pressure", "hypertens", "hypotens"), ("Blood pressure issue", "Pressure problem")),
    (("lung", "pulmon", "pneumon", "breath", "asthma", "copd", "respir", "cough"),
     ("Breathing problems", "Lung issue")),
    (("kidney", "renal", "urin", "bladder"), ("Kidney issue", "Urinary problem")),
    (("diabet", "glucose", "sugar", "thyroid"), ("Sugar issue", "Hormone problem")),
    (("pain", "ache", "arthritis", "fracture", "back", "knee", "hip", "shoulder"),
     ("Pain", "Joint issue", "Musculoskeletal issue")),
    ((), ("Health issue", "Medical problem", "Other concerns", "General", "Not feeling well")),
)  # fmt: skip

STOP_WORDS: frozenset[str] = frozenset(
    """a an the and or but if of to in on for with at by from as into about over after before than then so
    is are was were be been being am has have had do does did will would should can could may might must
    shall this that these those it its he she they his her their them him we you your our i me my
    who which what when where how there here also any all some each other such only very more most
    not no yes per via well up out off again further now patient patients pt plan assessment""".split()
)

_WORD = re.compile(r"[a-z0-9][a-z0-9'\-/.]*[a-z0-9]|[a-z0-9]")
_PREFIX = re.compile(r"^\s*(plan|assessment)\s*:", re.IGNORECASE)


def content_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` minus stop words and one-letter tokens (numbers are kept)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())]


def step_prefix(text: str) -> str:
    """'plan' or 'assessment' when the step starts with that label, else ''."""
    match = _PREFIX.match(text)
    return match.group(1).lower() if match else ""


# First words that make an unlabelled step a plan item (an order, an instruction, a referral).
PLAN_VERBS: frozenset[str] = frozenset(
    """will return follow follow-up start recommend continue order refer monitor prescribe call schedule
    consider provide instruct encourage obtain consult advise discuss keep avoid administer increase educate
    contact add give apply take discontinue repeat perform see admit initiate adjust hold use decrease treat
    check send counsel reassess talk prepare arrange stop begin get draw recheck titrate discharge elevate
    simplify limit maintain ensure offer refill wean restart resume screen evaluate assess inform remind teach
    notify document""".split()
)


def step_kind(text: str) -> str:
    """'plan' for an order or instruction, else 'assessment' (a finding, a history item, an impression)."""
    prefix = step_prefix(text)
    if prefix:
        return prefix
    first = text.split(maxsplit=1)[0].lower().strip(",:;.") if text.strip() else ""
    return "plan" if first in PLAN_VERBS or first.startswith("we'll") else "assessment"
