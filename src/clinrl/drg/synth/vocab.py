"""Secondary-condition phrase tables for the synthetic discharge summaries (:mod:`clinrl.drg.synth.generate`).

Pure data; the principal conditions live in :mod:`clinrl.drg.synth.bases`. Templates use ``{slot}``
fields: the names in :data:`SLOTS` (drawn once per note, so a value repeated within a note agrees with
itself) and the patient's pronouns (``he``, ``He``, ``his``, ``His``, ``him``, ``title``, ``person``).
All of it is invented for synthetic data; none of it is copied from a real record.

How the label follows from the text (see :mod:`clinrl.drg.synth.note`):

* the base DRG is the condition the course says the patient was admitted for: every base has its own
  ``markers`` (diagnosis phrases), and no other text in a course contains another base's marker;
* the CC/MCC class follows from the *active* secondary conditions documented in the course
  (:data:`CONDITIONS`, level ``MCC`` or ``CC``). Distractors (:data:`DISTRACTORS`: negations, history
  mentions, non-CC findings) and chronic non-CC problems (:data:`CHRONIC`) never decide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CHRONIC",
    "CONDITIONS",
    "DISTRACTORS",
    "FILLER",
    "MINOR_PROBLEMS",
    "SHORT_COURSES",
    "SLOTS",
    "TRANSITIONAL",
    "Chronic",
    "Condition",
    "Distractor",
]


def _nums(lo: float, hi: float, step: float, fmt: str = "{:.1f}") -> tuple[str, ...]:
    count = int(round((hi - lo) / step)) + 1
    return tuple(fmt.format(lo + i * step) for i in range(count))


# Values a template slot can take. Keep them free of newlines and of sentence-ending periods.
SLOTS: dict[str, tuple[str, ...]] = {
    "n_days": ("1", "2", "3", "4", "5", "7", "10", "14"),
    "n_hosp": ("2", "3", "4", "5", "6"),
    "spo2_low": _nums(80, 89, 1, "{:.0f}"),
    "spo2_ok": _nums(93, 99, 1, "{:.0f}"),
    "o2": ("2L nasal cannula", "3L nasal cannula", "4L nasal cannula", "a non-rebreather", "high-flow nasal cannula"),
    "temp_f": _nums(100.4, 103.2, 0.2),
    "hr_high": _nums(104, 148, 4, "{:.0f}"),
    "sbp_low": _nums(70, 88, 2, "{:.0f}"),
    "sbp_high": _nums(168, 220, 4, "{:.0f}"),
    "cr_base": _nums(0.6, 1.2, 0.1),
    "cr_peak": _nums(1.8, 4.8, 0.1),
    "cr_ckd4": _nums(2.4, 3.4, 0.1),
    "egfr4": _nums(16, 28, 1, "{:.0f}"),
    "na_low": _nums(118, 129, 1, "{:.0f}"),
    "na_norm": _nums(135, 143, 1, "{:.0f}"),
    "na_high": _nums(152, 166, 1, "{:.0f}"),
    "k_low": _nums(2.8, 3.4, 0.1),
    "ca_high": _nums(12.8, 15.6, 0.2),
    "hgb_low": _nums(5.8, 7.8, 0.1),
    "hgb_ok": _nums(9.6, 13.4, 0.2),
    "hgb_base": _nums(10.5, 13.0, 0.5),
    "units": ("1", "2", "3", "4"),
    "wbc_high": _nums(12.1, 24.5, 0.4),
    "lactate": _nums(2.2, 6.4, 0.2),
    "lactate_ok": _nums(0.8, 1.8, 0.1),
    "ef_low": ("15", "20", "25", "30", "35"),
    "ef_ok": ("55", "60", "65", ">55"),
    "bnp": _nums(1200, 9800, 400, "{:.0f}"),
    "lasix": ("40", "60", "80", "100", "120"),
    "net_neg": ("2", "3", "4", "5", "6", "7"),
    "dry_wt": _nums(58, 112, 3, "{:.1f}"),
    "trop_peak": _nums(0.08, 3.2, 0.12, "{:.2f}"),
    "a1c": _nums(6.2, 8.6, 0.2),
    "a1c_high": _nums(10.1, 14.8, 0.3),
    "glucose_high": _nums(420, 880, 20, "{:.0f}"),
    "glucose_low": _nums(28, 48, 2, "{:.0f}"),
    "anion_gap": _nums(19, 31, 1, "{:.0f}"),
    "lipase": _nums(640, 4800, 160, "{:.0f}"),
    "tbili": _nums(2.1, 9.8, 0.3),
    "albumin_low": _nums(1.8, 2.7, 0.1),
    "bmi_morbid": _nums(40.2, 54.0, 0.6),
    "bmi_over": _nums(26.1, 35.4, 0.3),
    "inr": _nums(1.4, 2.6, 0.1),
    "meld": _nums(14, 32, 1, "{:.0f}"),
    "esr": _nums(48, 118, 5, "{:.0f}"),
    "crp": _nums(42, 260, 12, "{:.0f}"),
    "pleural_l": ("0.9", "1.2", "1.5", "1.8"),
    "rate_ctrl": ("metoprolol tartrate 25 mg q6h", "metoprolol succinate 100 mg daily", "diltiazem 30 mg q6h"),
    "abx_cap": ("ceftriaxone and azithromycin", "levofloxacin", "ceftriaxone and doxycycline"),
    "abx_broad": ("vancomycin and cefepime", "vancomycin and piperacillin-tazobactam", "meropenem"),
    "abx_uti": ("ceftriaxone", "cefepime", "ciprofloxacin", "nitrofurantoin"),
    "abx_skin": ("IV vancomycin", "cefazolin", "clindamycin", "IV vancomycin then doxycycline"),
    "organism": ("E. coli", "Klebsiella pneumoniae", "Proteus mirabilis", "MSSA", "Streptococcus pneumoniae"),
    "side": ("left", "right"),
    "anticoag": ("apixaban", "rivaroxaban", "warfarin with enoxaparin bridge"),
    "ppi": ("IV pantoprazole 40 mg BID", "a pantoprazole drip", "IV esomeprazole"),
    "steroid": ("prednisone 40 mg daily", "IV methylprednisolone 125 mg", "prednisone 60 mg daily"),
    "aed": ("levetiracetam", "lacosamide", "valproate"),
    "pt_rec": ("home with services", "home with outpatient PT", "a short-term rehab facility", "home without needs"),
}


@dataclass(frozen=True)
class Condition:
    """A secondary diagnosis that sets the CC/MCC class when the course documents it as active."""

    key: str
    level: Literal["MCC", "CC"]
    group: str  # conditions, distractors and chronic problems of one group never meet in a note
    name: str  # as listed in the discharge diagnosis
    headers: tuple[str, ...]
    active: tuple[str, ...]
    only: tuple[str, ...] = ()  # if set: only for these base keys


@dataclass(frozen=True)
class Distractor:
    """A sentence that mentions a CC/MCC-sounding condition without documenting it (negated, resolved,
    historical or not a CC): it must not change the label."""

    group: str
    text: str


@dataclass(frozen=True)
class Chronic:
    """A chronic, stable, non-CC problem of the patient (also listed in the past medical history)."""

    key: str
    group: str
    pmh: str
    header: str
    sentences: tuple[str, ...]
    med: str


CONDITIONS: tuple[Condition, ...] = (
    # ---- MCC ----
    Condition(
        "resp_failure",
        "MCC",
        "resp",
        "Acute hypoxemic respiratory failure",
        ("Acute hypoxemic respiratory failure", "Hypoxemic respiratory failure"),
        (
            "On arrival {he} was saturating {spo2_low}% on room air with accessory muscle use, consistent with "
            "acute hypoxemic respiratory failure; {he} was placed on BiPAP and weaned to {o2} over {n_hosp} days.",
            "Course was complicated by acute hypoxic respiratory failure requiring {o2} and a brief MICU stay, "
            "with ABG showing hypoxemia; {he} was weaned to room air prior to leaving.",
            "{He} developed acute respiratory failure with hypoxia (SpO2 {spo2_low}% on {o2}) requiring ICU "
            "transfer for BiPAP, which resolved with treatment of the underlying process.",
        ),
    ),
    Condition(
        "atn",
        "MCC",
        "renal",
        "Acute tubular necrosis",
        ("AKI due to ATN", "Acute tubular necrosis"),
        (
            "Creatinine rose to {cr_peak} from a baseline of {cr_base} with muddy brown casts on urine sediment, "
            "consistent with acute tubular necrosis; renal was consulted and Cr slowly improved with supportive care.",
            "{His} course was complicated by ischemic acute tubular necrosis (peak Cr {cr_peak}, FeNa >2%), "
            "managed with avoidance of nephrotoxins and renal dosing of medications.",
        ),
    ),
    Condition(
        "esrd",
        "MCC",
        "renal",
        "End-stage renal disease on hemodialysis",
        ("ESRD on HD", "End-stage renal disease"),
        (
            "{He} has end-stage renal disease on hemodialysis (MWF) and was continued on {his} inpatient HD "
            "schedule with renal following; sevelamer and nephrocaps were continued.",
            "ESRD on hemodialysis via {side} arm AV fistula: received HD on {his} usual schedule, with "
            "ultrafiltration as tolerated, and renal dosing of all medications.",
        ),
    ),
    Condition(
        "encephalopathy",
        "MCC",
        "neuro",
        "Toxic-metabolic encephalopathy",
        ("Toxic-metabolic encephalopathy", "Metabolic encephalopathy"),
        (
            "{He} was noted to be somnolent and disoriented on hospital day {n_hosp}, felt to represent "
            "toxic-metabolic encephalopathy in the setting of acute illness; sedating medications were held and "
            "mental status returned to baseline.",
            "Course complicated by acute metabolic encephalopathy with waxing and waning attention; head CT was "
            "unremarkable and {he} improved with treatment of the underlying illness and delirium precautions.",
        ),
    ),
    Condition(
        "pe",
        "MCC",
        "vte",
        "Acute pulmonary embolism",
        ("Pulmonary embolus", "PE"),
        (
            "Given new tachycardia and hypoxemia, a CTA chest was obtained and showed a new {side} lower lobe "
            "segmental PE; {he} was started on a heparin drip and transitioned to {anticoag}.",
            "{He} was incidentally found to have a subsegmental PE on CT chest, started on heparin and "
            "transitioned to {anticoag} for a planned 3 month course.",
        ),
    ),
    Condition(
        "acute_sys_hf",
        "MCC",
        "cardiac",
        "Acute on chronic systolic heart failure",
        ("Acute on chronic systolic CHF", "Acute on chronic HFrEF"),
        (
            "{His} course was complicated by acute on chronic systolic CHF (EF {ef_low}%) with volume overload "
            "after IV fluids; {he} was diuresed with IV furosemide {lasix} mg BID, net negative {net_neg} L.",
            "Developed pulmonary edema from acute on chronic HFrEF (LVEF {ef_low}%) on hospital day {n_hosp}, "
            "requiring IV diuresis; home carvedilol was continued once euvolemic.",
        ),
    ),
    Condition(
        "severe_malnutrition",
        "MCC",
        "nutrition",
        "Severe protein-calorie malnutrition",
        ("Severe protein-calorie malnutrition", "Severe malnutrition"),
        (
            "Nutrition evaluated {him} and diagnosed severe protein-calorie malnutrition (albumin {albumin_low}, "
            "15% weight loss over 6 months, muscle wasting); started on oral supplements TID and a multivitamin.",
            "Meets ASPEN criteria for severe protein-calorie malnutrition with poor intake for over a month and "
            "temporal wasting; nutrition followed and calorie counts were initiated.",
        ),
    ),
    Condition(
        "pu_stage4",
        "MCC",
        "skin",
        "Stage 4 sacral pressure ulcer",
        ("Stage 4 sacral pressure ulcer", "Sacral decubitus ulcer, stage 4"),
        (
            "Wound care evaluated a stage 4 sacral pressure ulcer with exposed bone; managed with "
            "wet-to-dry dressings, an air mattress and turning every 2 hours.",
            "{He} was noted to have a stage IV sacral decubitus ulcer present on admission, followed by wound "
            "care nursing with daily dressing changes and pressure offloading.",
        ),
    ),
    Condition(
        "septic_shock",
        "MCC",
        "sepsis",
        "Septic shock",
        ("Septic shock",),
        (
            "{He} became hypotensive to SBP {sbp_low} despite 3 L of IV fluids with lactate {lactate} and was "
            "transferred to the MICU for septic shock requiring norepinephrine for {n_hosp} days.",
            "Course was complicated by septic shock requiring vasopressors (norepinephrine, briefly "
            "vasopressin) in the ICU, weaned off by hospital day {n_hosp}.",
        ),
        only=("sepsis",),
    ),
    Condition(
        "hemorrhagic_shock",
        "MCC",
        "shock",
        "Hemorrhagic shock",
        ("Hemorrhagic shock",),
        (
            "On presentation {he} was hypotensive to SBP {sbp_low} and tachycardic to {hr_high} in hemorrhagic "
            "shock, requiring massive transfusion protocol activation and MICU admission.",
        ),
        only=("gi_bleed",),
    ),
    # ---- CC ----
    Condition(
        "aki",
        "CC",
        "renal",
        "Acute kidney injury",
        ("AKI", "Acute kidney injury"),
        (
            "Creatinine rose to {cr_peak} from a baseline of {cr_base}, felt to be prerenal AKI; it improved with "
            "IV fluids and holding {his} lisinopril.",
            "{His} course was complicated by AKI with peak Cr {cr_peak} (baseline {cr_base}), likely prerenal in "
            "the setting of poor PO intake; resolved with hydration and holding nephrotoxins.",
        ),
    ),
    Condition(
        "ckd4",
        "CC",
        "renal",
        "Chronic kidney disease stage 4",
        ("CKD stage IV", "CKD stage 4"),
        (
            "{He} has CKD stage 4 (eGFR {egfr4}, Cr {cr_ckd4} at baseline) followed by outpatient nephrology; "
            "medications were renally dosed and Cr remained at {his} baseline.",
        ),
    ),
    Condition(
        "hyponatremia",
        "CC",
        "lytes",
        "Hyponatremia",
        ("Hyponatremia",),
        (
            "Sodium was {na_low} on admission; hyponatremia was felt to be hypovolemic and improved with normal "
            "saline to {na_norm}.",
            "Hyponatremia to {na_low}, felt to be SIADH in the setting of pain and nausea; treated with a fluid "
            "restriction of 1.2 L and salt tabs, with sodium {na_norm} prior to leaving.",
        ),
    ),
    Condition(
        "abla",
        "CC",
        "anemia",
        "Acute blood loss anemia",
        ("Acute blood loss anemia", "Acute blood loss anemia"),
        (
            "Hemoglobin fell to {hgb_low} from a baseline of {hgb_base} consistent with acute blood loss anemia; "
            "{he} was transfused {units} units of pRBCs with appropriate response.",
            "{He} developed acute blood loss anemia (Hgb nadir {hgb_low}) requiring transfusion of {units} "
            "units of packed red cells; hemoglobin then remained stable.",
        ),
    ),
    Condition(
        "uti",
        "CC",
        "infection",
        "Urinary tract infection",
        ("UTI", "Urinary tract infection"),
        (
            "Urinalysis showed pyuria and urine culture grew {organism}, consistent with urinary tract "
            "infection; treated with {abx_uti} for a 7 day course.",
            "{He} developed dysuria on hospital day {n_hosp} and was found to have a UTI with >100,000 "
            "{organism}, treated with {abx_uti}.",
        ),
    ),
    Condition(
        "cdiff",
        "CC",
        "cdiff",
        "Clostridioides difficile colitis",
        ("C. difficile colitis", "C diff infection"),
        (
            "{He} developed frequent loose stools and C. difficile PCR and toxin were positive; started on oral "
            "vancomycin 125 mg QID for a 10 day course.",
            "Course complicated by C diff colitis with leukocytosis to {wbc_high}, treated with PO vancomycin "
            "with improvement in stool frequency.",
        ),
    ),
    Condition(
        "chronic_sys_hf",
        "CC",
        "cardiac",
        "Chronic systolic heart failure",
        ("Chronic systolic CHF", "Chronic HFrEF"),
        (
            "{He} has chronic systolic CHF with LVEF {ef_low}% and appeared euvolemic throughout; home "
            "carvedilol, sacubitril-valsartan and torsemide were continued with daily weights.",
            "Chronic HFrEF (EF {ef_low}%): compensated this admission; continued home GDMT and monitored strict "
            "I/Os and daily weights.",
        ),
    ),
    Condition(
        "dvt",
        "CC",
        "vte",
        "Acute deep vein thrombosis",
        ("Left leg DVT", "Right leg DVT", "Acute DVT"),
        (
            "{He} developed {side} calf swelling and lower extremity ultrasound showed an acute {side} popliteal "
            "DVT; started on therapeutic anticoagulation with {anticoag}.",
        ),
    ),
    Condition(
        "moderate_malnutrition",
        "CC",
        "nutrition",
        "Moderate protein-calorie malnutrition",
        ("Moderate protein-calorie malnutrition", "Moderate malnutrition"),
        (
            "Nutrition consult diagnosed moderate protein-calorie malnutrition based on reduced intake and mild "
            "muscle wasting; oral supplements were started with meals.",
        ),
    ),
    Condition(
        "etoh_withdrawal",
        "CC",
        "etoh",
        "Alcohol dependence with withdrawal",
        ("EtOH withdrawal", "Alcohol withdrawal"),
        (
            "{He} developed tremor, tachycardia and diaphoresis on hospital day {n_hosp} consistent with alcohol "
            "withdrawal and was managed with a CIWA-guided diazepam taper, thiamine and folate.",
            "Daily heavy drinker; developed signs of alcohol withdrawal requiring phenobarbital load and taper, "
            "without seizures or DTs.",
        ),
    ),
    Condition(
        "morbid_obesity",
        "CC",
        "weight",
        "Morbid obesity",
        ("Morbid obesity", "Class III obesity"),
        (
            "{He} has morbid obesity with BMI {bmi_morbid}, which complicated mobility and exam; bariatric "
            "equipment was used and weight loss counseling was provided.",
        ),
    ),
    Condition(
        "pu_stage2",
        "CC",
        "skin",
        "Stage 2 sacral pressure ulcer",
        ("Stage 2 sacral pressure ulcer", "Sacral pressure injury"),
        (
            "Wound care noted a stage 2 sacral pressure ulcer with partial-thickness skin loss, managed with "
            "barrier cream, an allevyn dressing and frequent repositioning.",
        ),
    ),
)

DISTRACTORS: tuple[Distractor, ...] = (
    Distractor(
        "sepsis",
        "Blood cultures were drawn on admission and remained no growth; {he} did not meet "
        "sepsis criteria and lactate was {lactate_ok}.",
    ),
    Distractor(
        "sepsis",
        "There was initial concern for sepsis given a low-grade temperature, but {he} was "
        "hemodynamically stable, lactate was normal and no infectious source was identified.",
    ),
    Distractor("renal", "Creatinine remained at {his} baseline of {cr_base} throughout, without AKI."),
    Distractor(
        "renal",
        "{He} has a history of acute kidney injury several years ago related to NSAID use, "
        "which has since resolved; Cr was {cr_base} this admission.",
    ),
    Distractor(
        "resp",
        "{He} remained on room air throughout the admission with saturations {spo2_ok}% and no "
        "increased work of breathing.",
    ),
    Distractor("resp", "No supplemental oxygen requirement; ambulatory saturation was {spo2_ok}% on room air."),
    Distractor("lytes", "Sodium was {na_norm} on admission and remained within normal limits."),
    Distractor(
        "potassium",
        "Potassium was {k_low} on admission, likely from poor PO intake, and was repleted "
        "orally with normal values thereafter.",
    ),
    Distractor("neuro", "Mental status remained at baseline, alert and oriented x3 without signs of delirium."),
    Distractor("vte", "Lower extremity dopplers were obtained for leg asymmetry and were negative for DVT."),
    Distractor("vte", "Wells score was low and a CTA chest was negative for pulmonary embolism."),
    Distractor("cardiac", "Troponins were negative x2 and ECG showed no ischemic changes; ACS was felt unlikely."),
    Distractor(
        "cardiac", "TTE showed preserved biventricular function with LVEF {ef_ok}% and no significant valvular disease."
    ),
    Distractor(
        "anemia", "Hemoglobin remained stable at {hgb_ok} with no signs of bleeding, and no transfusion was required."
    ),
    Distractor(
        "infection",
        "Urinalysis was bland and urine culture grew mixed flora consistent with "
        "contamination, so antibiotics for UTI were not started.",
    ),
    Distractor(
        "cdiff",
        "{He} had a few loose stools after bowel regimen; C. difficile testing was negative and symptoms resolved.",
    ),
    Distractor("cdiff", "{He} has a remote history of C. diff colitis after antibiotics, without recurrence."),
    Distractor(
        "nutrition", "Nutrition was consulted and found no evidence of malnutrition; diet was advanced as tolerated."
    ),
    Distractor(
        "etoh", "{He} reports rare social alcohol use; CIWA scores remained 0 and there were no signs of withdrawal."
    ),
    Distractor("skin", "Skin exam on admission showed no pressure injuries; turning and offloading were encouraged."),
    Distractor(
        "glucose",
        "Blood sugars were mildly elevated to the 200s on steroids and were covered with an insulin sliding scale.",
    ),
    Distractor(
        "platelets",
        "Mild thrombocytopenia to 120s was noted, felt reactive, and platelets normalized without intervention.",
    ),
    # Negated, historical or resolved mentions that reuse the active conditions' own words: a reader has
    # to notice the negation or the tense, counting words is not enough.
    Distractor(
        "resp",
        "Despite tachypnea on arrival there was no acute hypoxemic respiratory failure; {he} never "
        "required BiPAP, high-flow nasal cannula or ICU transfer.",
    ),
    Distractor(
        "resp",
        "{He} had acute respiratory failure requiring intubation several years ago, but this "
        "admission {he} saturated {spo2_ok}% on room air.",
    ),
    Distractor(
        "renal",
        "Urine sediment showed no muddy brown casts, arguing against acute tubular necrosis, and "
        "creatinine stayed at {cr_base}.",
    ),
    Distractor(
        "renal", "{He} is not on hemodialysis and has no history of end-stage renal disease; renal function was normal."
    ),
    Distractor(
        "neuro",
        "Family was concerned about confusion, but {he} was at {his} cognitive baseline and there "
        "was no encephalopathy or delirium.",
    ),
    Distractor(
        "vte",
        "{He} completed 6 months of {anticoag} for a provoked PE years ago without recurrence; no "
        "anticoagulation was indicated now.",
    ),
    Distractor(
        "cardiac",
        "There is no history of heart failure; TTE showed LVEF {ef_ok}% and {he} was euvolemic without diuretics.",
    ),
    Distractor(
        "nutrition",
        "Albumin was low at {albumin_low} in the setting of acute illness, but nutrition found "
        "no criteria for malnutrition.",
    ),
    Distractor(
        "skin",
        "Wound care evaluated blanching sacral erythema, which was not a pressure ulcer; offloading was continued.",
    ),
    Distractor(
        "sepsis",
        "Septic shock was considered in the ED, but {he} remained normotensive without "
        "vasopressors and blood cultures were negative.",
    ),
    Distractor(
        "anemia",
        "{He} did not require transfusion of packed red cells; there was no evidence of acute blood "
        "loss anemia and hemoglobin was stable at {hgb_ok}.",
    ),
    Distractor(
        "infection",
        "{He} has a history of recurrent urinary tract infections; urine culture this admission "
        "showed no growth and no antibiotics were given.",
    ),
    Distractor(
        "etoh",
        "{He} has a remote history of alcohol withdrawal but has been abstinent for 10 years; there "
        "were no signs of withdrawal.",
    ),
    Distractor(
        "lytes",
        "{He} has a history of SIADH; sodium was normal at {na_norm} throughout and no fluid restriction was needed.",
    ),
    Distractor("weight", "Weight was stable with BMI {bmi_over}; bariatric equipment was not required."),
    Distractor(
        "renal",
        "{His} course was not complicated by AKI, and creatinine remained {cr_base} despite "
        "contrast; nephrotoxins were nonetheless avoided.",
    ),
    Distractor(
        "renal", "Medications were renally dosed for a mildly reduced clearance; {he} is not on HD and has no ESRD."
    ),
    Distractor(
        "lytes", "{He} did not develop hyponatremia despite hypotonic fluids, with sodium {na_norm} on the last check."
    ),
    Distractor("resp", "{He} did not develop hypoxemia after sedation and was never transferred to the ICU."),
    Distractor("neuro", "{He} did not develop delirium or toxic-metabolic encephalopathy during the stay."),
    Distractor(
        "nutrition",
        "Calorie counts were initiated for a poor appetite, but intake was adequate without "
        "muscle wasting, so malnutrition was not diagnosed and supplements were not needed.",
    ),
    Distractor(
        "skin",
        "Frequent repositioning, barrier cream and a protective dressing were used preventively; no "
        "pressure ulcer developed.",
    ),
    Distractor(
        "cardiac",
        "Home carvedilol was continued for hypertension; there is no systolic dysfunction (EF {ef_ok}%) and no HFrEF.",
    ),
    Distractor(
        "cdiff",
        "Oral vancomycin was not started because the C. difficile PCR was negative, and stools were not frequent.",
    ),
    Distractor("anemia", "Hemoglobin was checked daily and remained stable; no units of blood were needed."),
    Distractor(
        "infection",
        "Urine culture grew <10,000 colonies of mixed flora, not consistent with urinary tract "
        "infection, and no antibiotics were given.",
    ),
    Distractor(
        "etoh",
        "There was no tremor, diaphoresis or tachycardia to suggest withdrawal, and CIWA scores "
        "stayed 0 on the once-daily checks.",
    ),
    Distractor("weight", "Mobility was limited by knee pain rather than body habitus, with BMI {bmi_over}."),
    Distractor("vte", "{He} developed {side} calf tenderness on hospital day {n_hosp}, but ultrasound showed no DVT."),
    Distractor(
        "sepsis", "Lactate was {lactate_ok} and {he} never developed hypotension or tachycardia; sepsis was ruled out."
    ),
)

CHRONIC: tuple[Chronic, ...] = (
    Chronic(
        "htn",
        "bp",
        "hypertension",
        "Hypertension",
        (
            "Continued home amlodipine and lisinopril; blood pressures were well controlled.",
            "BPs were in the 120s-140s on {his} home regimen.",
        ),
        "Amlodipine 10 mg PO DAILY",
    ),
    Chronic(
        "hld",
        "lipids",
        "hyperlipidemia",
        "Hyperlipidemia",
        ("Continued atorvastatin 40 mg daily.", "Continued home statin."),
        "Atorvastatin 40 mg PO QPM",
    ),
    Chronic(
        "t2dm",
        "diabetes",
        "type 2 diabetes (A1c {a1c})",
        "Type 2 diabetes",
        (
            "Home metformin was held and {he} was covered with an insulin sliding scale; metformin resumed on "
            "leaving. A1c {a1c}.",
            "Diet-controlled; fingersticks were within goal.",
        ),
        "MetFORMIN (Glucophage) 500 mg PO BID",
    ),
    Chronic(
        "hypothyroid",
        "thyroid",
        "hypothyroidism",
        "Hypothyroidism",
        ("Continued levothyroxine.", "TSH within normal limits; continued home levothyroxine."),
        "Levothyroxine Sodium 75 mcg PO DAILY",
    ),
    Chronic("gerd", "gerd", "GERD", "GERD", ("Continued omeprazole.",), "Omeprazole 20 mg PO DAILY"),
    Chronic(
        "depression",
        "psych",
        "depression",
        "Depression",
        ("Mood stable; continued home sertraline.",),
        "Sertraline 50 mg PO DAILY",
    ),
    Chronic(
        "anxiety",
        "psych",
        "generalized anxiety disorder",
        "Anxiety",
        ("Continued home escitalopram.",),
        "Escitalopram Oxalate 10 mg PO DAILY",
    ),
    Chronic(
        "bph", "bph", "BPH", "BPH", ("Continued tamsulosin; voiding without difficulty.",), "Tamsulosin 0.4 mg PO QHS"
    ),
    Chronic("gout", "gout", "gout", "Gout", ("No flares; continued allopurinol.",), "Allopurinol 100 mg PO DAILY"),
    Chronic("osa", "osa", "obstructive sleep apnea", "OSA", ("Continued CPAP overnight.",), "CPAP at night"),
    Chronic(
        "oa",
        "oa",
        "osteoarthritis of the knees",
        "Osteoarthritis",
        ("Pain controlled with standing acetaminophen.",),
        "Acetaminophen 650 mg PO Q6H:PRN pain",
    ),
    Chronic(
        "cad",
        "cad",
        "coronary artery disease s/p PCI",
        "CAD",
        ("No chest pain; continued aspirin and statin.",),
        "Aspirin 81 mg PO DAILY",
    ),
    Chronic(
        "ckd3",
        "renal",
        "CKD stage 3a",
        "CKD stage 3",
        ("Cr at {his} baseline of {cr_base}; medications were renally dosed.",),
        "Calcitriol 0.25 mcg PO DAILY",
    ),
    Chronic(
        "obesity",
        "weight",
        "obesity (BMI {bmi_over})",
        "Obesity",
        ("BMI {bmi_over}; lifestyle counseling was provided.",),
        "Multivitamin 1 TAB PO DAILY",
    ),
    Chronic(
        "glaucoma",
        "eye",
        "glaucoma",
        "Glaucoma",
        ("Continued home eye drops.",),
        "Latanoprost 0.005% Ophth Soln 1 DROP BOTH EYES QHS",
    ),
    Chronic(
        "tobacco",
        "tobacco",
        "tobacco use",
        "Tobacco use",
        ("Counseled on cessation; nicotine patch offered.",),
        "Nicotine Patch 14 mg TD DAILY",
    ),
)

FILLER: tuple[str, ...] = (
    "Physical therapy evaluated {him} and recommended {pt_rec}.",
    "Occupational therapy worked with {him} on ADLs and recommended a shower chair.",
    "{His} home medications were continued except as noted above.",
    "{He} was maintained on a bowel regimen with senna and docusate while receiving opioids.",
    "Family meetings were held with {his} daughter to review the plan of care.",
    "{He} was seen by social work, who assisted with caregiver support and transportation.",
    "{He} tolerated a regular diet and was ambulating independently prior to leaving.",
    "Home medications were reconciled with {his} pharmacy and PCP.",
    "{He} was maintained on subcutaneous heparin for DVT prophylaxis.",
    "Case management arranged services; {he} was seen by PT who recommended {pt_rec}.",
    "Pain was controlled with acetaminophen and a short course of oxycodone as needed.",
    "Code status was confirmed as full code with {his} family at bedside.",
)

# Minor, non-CC inpatient problems ("# Constipation: ..."), a few per note.
MINOR_PROBLEMS: tuple[str, ...] = (
    "# Constipation: No bowel movement for 3 days; resolved with senna and polyethylene glycol.",
    "# Insomnia: Melatonin at bedtime as needed, with good effect.",
    "# Leukocytosis: Mild, felt to be reactive; trended down without antibiotics.",
    "# Pain control: Managed with standing acetaminophen and lidocaine patches.",
    "# Nausea: Intermittent, controlled with ondansetron as needed.",
    "# Hyperglycemia: Mild stress hyperglycemia, covered with sliding scale insulin; no home regimen changes.",
    "# Deconditioning: Worked with PT daily; ambulating with a walker prior to leaving.",
    "# Elevated blood pressure: Intermittently elevated in the setting of pain, improved with analgesia.",
    "# Vitamin D deficiency: 25-OH vitamin D low; started on repletion.",
    "# Goals of care: Discussed with {him} and {his} family; {he} wishes to remain full code.",
    "# Tobacco: Nicotine patch offered and cessation counseling provided.",
    "# Iron deficiency: Ferritin low; started on oral iron every other day.",
)

TRANSITIONAL: tuple[str, ...] = (
    "Please check CBC and chem-7 at the PCP visit within 1 week",
    "Code status: Full code (confirmed)",
    "Code status: DNR/DNI, confirmed with patient and family",
    "Contact: ___ (daughter) ___",
    "Contact: ___ (husband) ___",
    "Please follow up pending blood cultures",
    "Please reassess home antihypertensives as an outpatient",
    "Consider outpatient sleep study",
    "New prescriptions were sent to {his} pharmacy",
    "Recommend age-appropriate cancer screening as an outpatient",
    "Please titrate bowel regimen as needed",
)

# Very short courses (≤ 40 words): an edge case a real file has. {marker} names the principal.
SHORT_COURSES: tuple[str, ...] = (
    "Pt admitted with {marker}, treated per protocol and improved. Discharged home in stable condition.",
    "Admitted for {marker}. See HPI. Uneventful stay.",
    "{He} was admitted for {marker}, managed medically, and returned home once symptoms resolved.",
    "Treated for {marker} with improvement; tolerated diet and ambulating; follow up with PCP.",
)
